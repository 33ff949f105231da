//! Perplexity of a text with a fixed-length window, by Hugging Face's procedure for
//! fixed-length models ("Perplexity of fixed-length models" in the transformers docs): windows
//! of `context` tokens starting every `stride` tokens; each window scores the tokens that the
//! previous window did not reach (the first window all but its first token); the last window
//! ends at the end of the text. Every window is a fresh forward pass without KV cache; the
//! model's other state (dynamic-NTK frequencies) carries over as in transformers.

use candle_core::{Device, Tensor, D};

use crate::llama::CausalLm;

/// Rows of logits turned into log-probabilities at a time.
const LOGSOFTMAX_ROWS: usize = 1024;

/// Result of [`perplexity`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Perplexity {
    /// Number of scored tokens.
    pub tokens: usize,
    /// Sum of their negative log-likelihoods (nats).
    pub nll_sum: f64,
    /// `exp(nll_sum / tokens)`.
    pub ppl: f64,
    /// NLL of each scored token, in text order (f32, as the model computes it).
    pub per_token_nll: Vec<f32>,
}

/// Scores `ids` with windows of `context` tokens moved by `stride`.
pub fn perplexity(
    model: &mut dyn CausalLm,
    ids: &[u32],
    context: usize,
    stride: usize,
    device: &Device,
    mut on_window: impl FnMut(usize, usize),
) -> candle_core::Result<Perplexity> {
    assert!(context >= 2 && stride >= 1 && stride <= context, "context >= 2 and 1 <= stride <= context");
    let n = ids.len();
    let mut per_token = Vec::with_capacity(n.saturating_sub(1));
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < n {
        let end = (begin + context).min(n);
        let target_len = end - prev_end;
        model.clear_cache();
        let window = Tensor::new(&ids[begin..end], device)?.unsqueeze(0)?;
        let logits = model.forward(&window, 0)?.squeeze(0)?.to_dtype(candle_core::DType::F32)?;
        // Row t predicts token t + 1 of the window; the log-softmax runs over rows in chunks, so
        // no second `n × vocab` tensor is held (6.4 GB at 32k tokens of a 49k vocabulary).
        let first = (end - begin - target_len).max(1);
        let mut row = first - 1;
        while row < end - begin - 1 {
            let n = LOGSOFTMAX_ROWS.min(end - begin - 1 - row);
            let logp = candle_nn::ops::log_softmax(&logits.narrow(0, row, n)?, D::Minus1)?;
            let targets = Tensor::new(&ids[begin + row + 1..begin + row + 1 + n], device)?;
            let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
            per_token.extend(picked.neg()?.to_vec1::<f32>()?);
            row += n;
        }
        on_window(end, n);
        prev_end = end;
        if end == n {
            break;
        }
        begin += stride;
    }
    let nll_sum: f64 = per_token.iter().map(|&x| f64::from(x)).sum();
    let tokens = per_token.len();
    Ok(Perplexity { tokens, nll_sum, ppl: (nll_sum / tokens as f64).exp(), per_token_nll: per_token })
}

/// One point of [`by_length`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LengthPoint {
    /// Tokens in the window (the first `length` of the text).
    pub length: usize,
    /// Scored tokens (`length − 1`).
    pub tokens: usize,
    /// Sum of their negative log-likelihoods (nats).
    pub nll_sum: f64,
    /// `exp(nll_sum / tokens)`.
    pub ppl: f64,
    /// Wall time of the forward pass.
    pub seconds: f64,
}

/// Perplexity of the first `length` tokens of `ids`, for each of `lengths`, each in one window
/// from a fresh model state (cache and dynamic-NTK frequencies reset): every token predicted
/// from all of the text before it — the usual view of how far a RoPE variant stretches.
/// `lengths` longer than `ids` are an error.
pub fn by_length(
    model: &mut dyn CausalLm,
    ids: &[u32],
    lengths: &[usize],
    device: &Device,
    mut on_length: impl FnMut(usize),
) -> candle_core::Result<Vec<LengthPoint>> {
    let mut out = Vec::with_capacity(lengths.len());
    for &length in lengths {
        if length < 2 || length > ids.len() {
            candle_core::bail!("length {length}: the text has {} tokens (a length is 2 to that)", ids.len());
        }
        model.reset();
        let t0 = std::time::Instant::now();
        let p = perplexity(model, &ids[..length], length, length, device, |_, _| {})?;
        out.push(LengthPoint {
            length,
            tokens: p.tokens,
            nll_sum: p.nll_sum,
            ppl: p.ppl,
            seconds: t0.elapsed().as_secs_f64(),
        });
        on_length(length);
    }
    Ok(out)
}
