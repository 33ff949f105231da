//! Text generation over a [`CausalLm`]: chunked prefill into the KV cache, then greedy
//! decoding (the default) or seeded sampling with temperature, top-k and top-p; stops at
//! end-of-sequence tokens, extra stop tokens, stop strings or `max_new_tokens`; reports token
//! counts and timings.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::llama::CausalLm;

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Upper bound on new tokens.
    pub max_new_tokens: usize,
    /// 0 (the default) is greedy; above 0, logits are divided by it and sampled.
    pub temperature: f64,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f64,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation ends when the text contains one of these; the text is cut before it.
    pub stop_strings: Vec<String>,
    /// Tokens that end generation besides the model's end-of-sequence tokens.
    pub stop_tokens: Vec<u32>,
    /// Prompt tokens per prefill forward pass.
    pub prefill_chunk: usize,
    /// Keep generating past end-of-sequence tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop_strings: Vec::new(),
            stop_tokens: Vec::new(),
            prefill_chunk: 512,
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_new_tokens` reached.
    Length,
    /// An end-of-sequence or stop token was produced (it is not part of the text).
    StopToken,
    /// A stop string appeared (the text is cut before it).
    StopString,
    /// The caller's `on_token` asked to stop (e.g. its client went away).
    Cancelled,
}

/// What [`generate`] returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generation {
    /// The generated text (decoded without special tokens, cut at a stop string).
    pub text: String,
    /// The generated token ids (a final stop token included).
    pub tokens: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Seconds spent on the prompt.
    pub prefill_s: f64,
    /// Seconds spent generating after the prompt.
    pub decode_s: f64,
    /// Why it ended.
    pub stop_reason: StopReason,
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Samples from `logits` after temperature, top-k and top-p.
fn sample(logits: &[f32], params: &GenerationParams, rng: &mut ChaCha8Rng) -> u32 {
    let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / params.temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(u32, f64)> = scaled.iter().enumerate().map(|(i, &l)| (i as u32, (l - max).exp())).collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if params.top_k > 0 {
        probs.truncate(params.top_k);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if params.top_p < 1.0 {
        let mut cumulative = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cumulative += p.1 / total;
            if cumulative >= params.top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f64>() * total;
    for &(id, p) in &probs {
        if r < p {
            return id;
        }
        r -= p;
    }
    probs.last().map_or(0, |p| p.0)
}

/// Generates after `prompt` (token ids); `decode` turns generated ids into text (for stop
/// strings and the result). The model's cache is reset first.
pub fn generate(
    model: &mut dyn CausalLm,
    prompt: &[u32],
    params: &GenerationParams,
    device: &Device,
    decode: &dyn Fn(&[u32]) -> String,
) -> candle_core::Result<Generation> {
    generate_with(model, prompt, params, device, decode, &mut |_| true)
}

/// [`generate`] that calls `on_token` with the tokens generated so far after each new one
/// (for streaming); a final stop token is not passed on. Generation ends when `on_token`
/// returns false.
pub fn generate_with(
    model: &mut dyn CausalLm,
    prompt: &[u32],
    params: &GenerationParams,
    device: &Device,
    decode: &dyn Fn(&[u32]) -> String,
    on_token: &mut dyn FnMut(&[u32]) -> bool,
) -> candle_core::Result<Generation> {
    assert!(!prompt.is_empty(), "a prompt needs at least one token");
    model.reset();
    model.reserve(prompt.len() + params.max_new_tokens);
    let eos: &[u32] = if params.ignore_eos { &[] } else { &model.config().eos_token_ids };
    let stops: Vec<u32> = eos.iter().chain(&params.stop_tokens).copied().collect();
    let start = Instant::now();
    let mut last = None;
    for (i, chunk) in prompt.chunks(params.prefill_chunk.max(1)).enumerate() {
        let ids = Tensor::new(chunk, device)?.unsqueeze(0)?;
        last = Some(model.forward_last(&ids, i * params.prefill_chunk.max(1))?.squeeze(0)?);
    }
    let prefill_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut stop_reason = StopReason::Length;
    let mut logits = last.expect("prompt is not empty");
    while tokens.len() < params.max_new_tokens {
        let values = logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let next = if params.temperature > 0.0 { sample(&values, params, &mut rng) } else { argmax(&values) };
        tokens.push(next);
        if stops.contains(&next) {
            stop_reason = StopReason::StopToken;
            break;
        }
        if !on_token(&tokens) {
            stop_reason = StopReason::Cancelled;
            break;
        }
        // Stop strings need the text so far; without them it is decoded once at the end.
        if !params.stop_strings.is_empty() {
            text = decode(&tokens);
            if let Some(cut) = params.stop_strings.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(cut);
                stop_reason = StopReason::StopString;
                break;
            }
        }
        if tokens.len() == params.max_new_tokens {
            break;
        }
        let ids = Tensor::new(&[next], device)?.unsqueeze(0)?;
        logits = model.forward_last(&ids, prompt.len() + tokens.len() - 1)?.squeeze(0)?;
    }
    match stop_reason {
        StopReason::StopToken => text = decode(&tokens[..tokens.len() - 1]),
        StopReason::Length | StopReason::Cancelled => text = decode(&tokens),
        StopReason::StopString => {}
    }
    Ok(Generation {
        text,
        completion_tokens: tokens.len(),
        tokens,
        prompt_tokens: prompt.len(),
        prefill_s,
        decode_s: start.elapsed().as_secs_f64(),
        stop_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let p = GenerationParams { temperature: 1.0, top_k: 2, seed: 7, ..Default::default() };
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200).map(|_| sample(&logits, &p, &mut rng)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|&t| t == 2 || t == 3));
        assert!(a.iter().filter(|&&t| t == 3).count() > 100);
        let greedy_like = GenerationParams { temperature: 1.0, top_p: 0.1, ..Default::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..50).all(|_| sample(&logits, &greedy_like, &mut rng) == 3));
    }
}
