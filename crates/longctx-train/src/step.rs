//! Forward and backward passes over one micro-batch.
//!
//! The micro-batch's sequences are packed into one row `[1, Σ len]` and run through the
//! decoder's packed path (each sequence at its own positions, block-diagonal attention). The
//! LM head runs only at the positions whose next token is a target, `head_chunk` rows at a
//! time, each chunk's backward done before the next (the `seq × vocab` logits never exist
//! whole). The loss is `Σ w · ℓ` with the sequences' weights of [`crate::loss`].
//!
//! With gradient checkpointing the forward pass keeps only each layer's input; the backward
//! pass recomputes one layer at a time and carries the gradient of its input down, so memory
//! holds one layer's activations instead of all of them. Both ways give the same gradients.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, TensorId, Var, D};
use longctx_models::llama::{CausalLm, Llama, LoraDropout};

use crate::data::Encoded;
use crate::Result;

/// A micro-batch ready for the model.
#[derive(Debug)]
pub struct Packed {
    /// Token ids `[1, Σ len]`.
    pub ids: Tensor,
    /// Length of each sequence.
    pub lens: Vec<usize>,
    /// Rows of the packed sequence whose logits predict a target, `[K]` (u32).
    pub positions: Tensor,
    /// The target ids, `[K]` (u32).
    pub targets: Tensor,
    /// Each target's weight, `[K]` (f32).
    pub weights: Tensor,
    /// The same weights in f64 (for the loss value).
    weights_f64: Vec<f64>,
    /// Sequence of each target.
    pub target_sequence: Vec<usize>,
}

impl Packed {
    /// Packs `sequences` with a token weight per sequence.
    pub fn new(sequences: &[&Encoded], weights: &[f64], device: &Device) -> Result<Self> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut w = Vec::new();
        let mut target_sequence = Vec::new();
        for (i, (s, &weight)) in sequences.iter().zip(weights).enumerate() {
            let base = ids.len();
            ids.extend_from_slice(&s.ids);
            for (t, &is_target) in s.targets.iter().enumerate() {
                if is_target && t > 0 {
                    positions.push((base + t - 1) as u32);
                    targets.push(s.ids[t]);
                    w.push(weight);
                    target_sequence.push(i);
                }
            }
        }
        let n = ids.len();
        let k = targets.len();
        Ok(Self {
            ids: Tensor::from_vec(ids, (1, n), device)?,
            lens: sequences.iter().map(|s| s.len()).collect(),
            positions: Tensor::from_vec(positions, k, device)?,
            targets: Tensor::from_vec(targets, k, device)?,
            weights: Tensor::from_vec(w.iter().map(|&x| x as f32).collect::<Vec<_>>(), k, device)?,
            weights_f64: w,
            target_sequence,
        })
    }

    /// Tokens.
    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Target tokens.
    pub fn n_targets(&self) -> usize {
        self.weights_f64.len()
    }
}

/// How a micro-batch runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Recompute each layer in the backward pass instead of keeping its activations.
    pub checkpointing: bool,
    /// Target rows per LM-head chunk.
    pub head_chunk: usize,
    /// LoRA dropout while training.
    pub dropout: Option<LoraDropout>,
}

impl Default for StepOptions {
    fn default() -> Self {
        Self { checkpointing: false, head_chunk: 1024, dropout: None }
    }
}

/// Gradients summed over micro-batches, by variable.
#[derive(Debug, Default)]
pub struct Grads(HashMap<TensorId, Tensor>);

impl Grads {
    /// Adds the gradients `store` holds for `vars`.
    fn add(&mut self, store: &candle_core::backprop::GradStore, vars: &[Var]) -> Result<()> {
        for v in vars {
            if let Some(g) = store.get(v.as_tensor()) {
                // Detached: a gradient must not hold on to the graph it came from.
                let g = g.detach();
                let sum = match self.0.remove(&v.as_tensor().id()) {
                    Some(acc) => (acc + g)?,
                    None => g,
                };
                self.0.insert(v.as_tensor().id(), sum);
            }
        }
        Ok(())
    }

    /// The gradient of `var` (none if it had no effect on the loss).
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.0.get(&var.as_tensor().id())
    }

    /// Replaces the gradient of `var`.
    pub fn set(&mut self, var: &Var, grad: Tensor) {
        self.0.insert(var.as_tensor().id(), grad);
    }

    /// Forgets every gradient.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Per-target negative log-likelihoods of `h` `[K, hidden]` (hidden states at the target
/// positions) for `targets`, in f32.
fn nll(model: &Llama, h: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = model.head(h)?.to_dtype(DType::F32)?.contiguous()?;
    if logits.device().is_cpu() {
        let targets: Vec<u32> = targets.to_vec1()?;
        return Ok(logits.apply_op1(CrossEntropy { targets })?);
    }
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    Ok(logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?)
}

/// `−log softmax(logits)[target]` per row of f32 logits `[K, vocab]`, with its backward pass
/// (`(softmax − onehot) · upstream`): one pass over the logits each way instead of the
/// half-dozen `[K, vocab]` tensors the composed operations make.
struct CrossEntropy {
    targets: Vec<u32>,
}

impl CrossEntropy {
    fn rows<'a>(
        storage: &'a candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(&'a [f32], usize)> {
        let candle_core::CpuStorage::F32(data) = storage else { candle_core::bail!("cross-entropy takes f32 logits") };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("cross-entropy: logits not contiguous")
        };
        let vocab = layout.shape().dims().last().copied().unwrap_or(1);
        Ok((&data[a..b], vocab))
    }
}

/// `(max, log Σ exp(x − max))` of a row.
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    (max, sum.ln())
}

impl candle_core::CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (logits, vocab) = Self::rows(storage, layout)?;
        let out: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let (max, lse) = log_sum_exp(row);
                max + lse - row[t as usize]
            })
            .collect();
        let k = out.len();
        Ok((candle_core::CpuStorage::F32(out), candle_core::Shape::from(k)))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (k, vocab) = logits.dims2()?;
        let x: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let g: Vec<f32> = grad_res.to_vec1()?;
        let mut out = vec![0f32; k * vocab];
        out.par_chunks_mut(vocab).enumerate().for_each(|(r, o)| {
            let row = &x[r * vocab..(r + 1) * vocab];
            let (max, lse) = log_sum_exp(row);
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - max - lse).exp() * g[r];
            }
            o[self.targets[r] as usize] -= g[r];
        });
        Ok(Some(Tensor::from_vec(out, (k, vocab), logits.device())?))
    }
}

/// The per-target NLL of a micro-batch, without gradients (the evaluation path: the
/// inference kernels run).
pub fn target_nll(model: &Llama, packed: &Packed, head_chunk: usize) -> Result<Vec<f32>> {
    let mut h = model.embed(&packed.ids)?.detach();
    let rope = model.packed_rope(&packed.lens, h.dtype(), packed.ids.device())?;
    for i in 0..model.config().num_layers {
        h = model.layer_packed(i, &h, &rope, &packed.lens, None)?.detach();
    }
    let sel = h.squeeze(0)?.index_select(&packed.positions, 0)?;
    let k = packed.n_targets();
    let mut out = Vec::with_capacity(k);
    for start in (0..k).step_by(head_chunk.max(1)) {
        let len = head_chunk.max(1).min(k - start);
        let part = nll(model, &sel.narrow(0, start, len)?, &packed.targets.narrow(0, start, len)?)?;
        out.extend(part.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Forward and backward of one micro-batch: returns `Σ w · ℓ` and adds the gradients of
/// `vars` (the trainable variables the model's tensors are built on) into `grads`.
pub fn forward_backward(
    model: &Llama,
    packed: &Packed,
    vars: &[Var],
    options: &StepOptions,
    grads: &mut Grads,
) -> Result<f64> {
    let device = packed.ids.device();
    let layers = model.config().num_layers;
    let embedded = model.embed(&packed.ids)?;
    let rope = model.packed_rope(&packed.lens, embedded.dtype(), device)?;
    let embedding_trains = embedded.track_op();
    let lens = &packed.lens;
    // Forward: the last hidden state, and with checkpointing every layer's input (detached).
    let mut inputs: Vec<Tensor> = Vec::new();
    let last = if options.checkpointing {
        let mut h = embedded.detach();
        for i in 0..layers {
            inputs.push(h.clone());
            h = model.layer_packed(i, &h, &rope, lens, options.dropout)?.detach();
        }
        h
    } else {
        let mut h = embedded.clone();
        for i in 0..layers {
            h = model.layer_packed(i, &h, &rope, lens, options.dropout)?;
        }
        h
    };
    // The LM head at the target positions, chunk by chunk: each chunk's loss, its
    // gradient with respect to the hidden states it read, and the head's own gradients.
    let sel = last.squeeze(0)?.index_select(&packed.positions, 0)?;
    let k = packed.n_targets();
    let chunk = options.head_chunk.max(1);
    let mut loss = 0f64;
    let mut sel_grads = Vec::with_capacity(k.div_ceil(chunk));
    for start in (0..k).step_by(chunk) {
        let len = chunk.min(k - start);
        let x = Var::from_tensor(&sel.narrow(0, start, len)?.detach())?;
        let l = nll(model, x.as_tensor(), &packed.targets.narrow(0, start, len)?)?;
        let weighted = (l * packed.weights.narrow(0, start, len)?)?.sum_all()?;
        loss += f64::from(weighted.to_scalar::<f32>()?);
        let store = weighted.backward()?;
        grads.add(&store, vars)?;
        sel_grads.push(store.get(x.as_tensor()).cloned().map_or_else(|| x.as_tensor().zeros_like(), Ok)?);
    }
    if k == 0 {
        return Ok(0.0);
    }
    let g_sel = Tensor::cat(&sel_grads, 0)?;
    if options.checkpointing {
        // The gradient of the last hidden state: the head's, scattered to the target rows.
        let hidden = last.dim(D::Minus1)?;
        let zeros = Tensor::zeros((last.dim(1)?, hidden), g_sel.dtype(), device)?;
        let mut upstream = zeros.index_add(&packed.positions, &g_sel, 0)?.unsqueeze(0)?;
        for i in (0..layers).rev() {
            let x = Var::from_tensor(&inputs[i])?;
            let out = model.layer_packed(i, x.as_tensor(), &rope, lens, options.dropout)?;
            let store = (out * &upstream)?.sum_all()?.backward()?;
            grads.add(&store, vars)?;
            if i == 0 && !embedding_trains {
                break;
            }
            upstream = store.get(x.as_tensor()).cloned().map_or_else(|| x.as_tensor().zeros_like(), Ok)?;
        }
        if embedding_trains {
            let store = (embedded * upstream)?.sum_all()?.backward()?;
            grads.add(&store, vars)?;
        }
    } else if sel.track_op() {
        let store = (sel * g_sel)?.sum_all()?.backward()?;
        grads.add(&store, vars)?;
    }
    Ok(loss)
}

/// The loss of one pass over `data` with no training (`longctx loss`): the whole data taken as
/// one optimizer step, run in micro-batches of `batching`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossReport {
    /// The loss (`token-mean` or `longalign` over every sequence).
    pub loss: f64,
    /// Sequences.
    pub sequences: usize,
    /// Target tokens.
    pub target_tokens: usize,
    /// Tokens.
    pub tokens: usize,
}

/// [`LossReport`] of `data` under `model`.
pub fn evaluate(
    model: &Llama,
    data: &[Encoded],
    batching: crate::batch::Batching,
    kind: crate::loss::LossKind,
    micro_batch_tokens: usize,
) -> Result<LossReport> {
    let n: Vec<usize> = data.iter().map(Encoded::n_targets).collect();
    let w = kind.weights(&n);
    let lens: Vec<usize> = data.iter().map(Encoded::len).collect();
    let mut loss = 0.0;
    for mb in crate::batch::micro_batches(&lens, batching, micro_batch_tokens, 0, 0) {
        let refs: Vec<&Encoded> = mb.iter().map(|&i| &data[i]).collect();
        let weights: Vec<f64> = mb.iter().map(|&i| w[i]).collect();
        let packed = Packed::new(&refs, &weights, &Device::Cpu)?;
        let nll = target_nll(model, &packed, 1024)?;
        loss += nll.iter().zip(&packed.target_sequence).map(|(&l, &s)| f64::from(l) * weights[s]).sum::<f64>();
    }
    Ok(LossReport { loss, sequences: data.len(), target_tokens: n.iter().sum(), tokens: lens.iter().sum() })
}
