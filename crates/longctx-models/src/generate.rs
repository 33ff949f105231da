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
    let start = Instant::now();
    let mut logits = prefill(model, prompt, params.prefill_chunk, device)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut decoding = Decoding::new(params, &model.config().eos_token_ids, prompt.len());
    while let Some(next) = decoding.step(&logits, decode, on_token)? {
        let ids = Tensor::new(&[next], device)?.unsqueeze(0)?;
        logits = model.forward_last(&ids, prompt.len() + decoding.tokens().len() - 1)?.squeeze(0)?;
    }
    Ok(decoding.finish(decode, prefill_s, start.elapsed().as_secs_f64()))
}

/// Runs `prompt` through `model` in chunks of `chunk` tokens from position 0 (the cache must be
/// empty) and returns the logits of its last position, `[vocab]`.
pub fn prefill(model: &mut dyn CausalLm, prompt: &[u32], chunk: usize, device: &Device) -> candle_core::Result<Tensor> {
    prefill_from(model, prompt, 0, chunk, device)
}

/// [`prefill`] of `prompt` after the `start` tokens the cache already holds (a shared prefix).
pub fn prefill_from(
    model: &mut dyn CausalLm,
    prompt: &[u32],
    start: usize,
    chunk: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let chunk = chunk.max(1);
    let mut last = None;
    for (i, part) in prompt.chunks(chunk).enumerate() {
        let ids = Tensor::new(part, device)?.unsqueeze(0)?;
        last = Some(model.forward_last(&ids, start + i * chunk)?.squeeze(0)?);
    }
    last.ok_or_else(|| candle_core::Error::Msg("a prompt needs at least one token".into()))
}

/// The choice of tokens after a prompt, one step at a time, independent of how the logits are
/// computed: [`generate_with`] runs it on one sequence, a batching server on each of its
/// sequences, with the same results.
#[derive(Debug)]
pub struct Decoding {
    params: GenerationParams,
    stops: Vec<u32>,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    text: String,
    prompt_tokens: usize,
    stop_reason: Option<StopReason>,
}

impl Decoding {
    /// Decoding after a prompt of `prompt_tokens` tokens for a model whose end-of-sequence
    /// tokens are `eos` (ignored with `params.ignore_eos`).
    pub fn new(params: &GenerationParams, eos: &[u32], prompt_tokens: usize) -> Self {
        let eos: &[u32] = if params.ignore_eos { &[] } else { eos };
        Self {
            params: params.clone(),
            stops: eos.iter().chain(&params.stop_tokens).copied().collect(),
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            tokens: Vec::new(),
            text: String::new(),
            prompt_tokens,
            stop_reason: (params.max_new_tokens == 0).then_some(StopReason::Length),
        }
    }

    /// The tokens chosen so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Why decoding ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Chooses the next token from `logits` (`[vocab]`, the last position's). Returns the
    /// token to feed the model next, or `None` when decoding has ended (a stop token, a stop
    /// string, `max_new_tokens`, or `on_token` returning false).
    pub fn step(
        &mut self,
        logits: &Tensor,
        decode: &dyn Fn(&[u32]) -> String,
        on_token: &mut dyn FnMut(&[u32]) -> bool,
    ) -> candle_core::Result<Option<u32>> {
        if self.stop_reason.is_some() {
            return Ok(None);
        }
        let values = logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let params = &self.params;
        let next = if params.temperature > 0.0 { sample(&values, params, &mut self.rng) } else { argmax(&values) };
        self.tokens.push(next);
        if self.stops.contains(&next) {
            self.stop_reason = Some(StopReason::StopToken);
            return Ok(None);
        }
        if !on_token(&self.tokens) {
            self.stop_reason = Some(StopReason::Cancelled);
            return Ok(None);
        }
        // Stop strings need the text so far; without them it is decoded once at the end.
        if !params.stop_strings.is_empty() {
            self.text = decode(&self.tokens);
            if let Some(cut) = params.stop_strings.iter().filter_map(|s| self.text.find(s.as_str())).min() {
                self.text.truncate(cut);
                self.stop_reason = Some(StopReason::StopString);
                return Ok(None);
            }
        }
        if self.tokens.len() == params.max_new_tokens {
            self.stop_reason = Some(StopReason::Length);
            return Ok(None);
        }
        Ok(Some(next))
    }

    /// The result, with the timings the caller measured.
    pub fn finish(self, decode: &dyn Fn(&[u32]) -> String, prefill_s: f64, decode_s: f64) -> Generation {
        let stop_reason = self.stop_reason.unwrap_or(StopReason::Cancelled);
        let text = match stop_reason {
            StopReason::StopToken => decode(&self.tokens[..self.tokens.len() - 1]),
            StopReason::Length | StopReason::Cancelled => decode(&self.tokens),
            StopReason::StopString => self.text,
        };
        Generation {
            text,
            completion_tokens: self.tokens.len(),
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            prefill_s,
            decode_s,
            stop_reason,
        }
    }
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
