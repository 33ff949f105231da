//! Bidirectional transformer encoders: BERT (all-MiniLM-L6-v2, cross-encoders) and
//! RoBERTa / XLM-RoBERTa (the LLMLingua-2 token classifier), as transformers computes them.
//!
//! Sequences of different lengths are *packed* instead of padded: the dense layers run once
//! over the concatenated tokens of a batch, and attention runs per sequence. Without padding
//! there is no mask, and no work is spent on pad tokens; the result for each sequence is the
//! one transformers computes for it (padded positions never influence real ones there).

// The elementwise bodies are inlined into `#[target_feature]` wrappers so that they are
// compiled for AVX-512 where the CPU has it.
#![allow(clippy::inline_always)]

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;
use serde::Deserialize;

use crate::amx::Bf16Linear;
use crate::sgemm::PackedLinear;
use crate::ModelError;

/// The number format of an encoder's dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations: the results of transformers in f32 (the default).
    #[default]
    F32,
    /// Weights and activations rounded to bf16, products accumulated in f32 (as PyTorch's
    /// bf16 matmul): on Intel AMX several times faster; norms, attention and GELU stay f32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(ModelError::Load(format!("unknown precision `{other}` (f32 or bf16)"))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

/// The fields of an encoder's `config.json` that the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct EncoderConfig {
    /// `bert`, `roberta`, `xlm-roberta` (RoBERTa-style position ids) …
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer (`gelu` is the exact, erf-based one).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Number of position embeddings.
    pub max_position_embeddings: usize,
    /// Number of token-type (segment) embeddings.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token (RoBERTa's positions start after it).
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Class names of a classification head, by index.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Architecture names (e.g. `XLMRobertaForTokenClassification`).
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// Whether position ids start after the padding id, as RoBERTa's do.
    pub fn roberta_positions(&self) -> bool {
        matches!(self.model_type.as_str(), "roberta" | "xlm-roberta" | "camembert")
    }

    /// The longest sequence (special tokens included) the position table allows.
    pub fn max_tokens(&self) -> usize {
        if self.roberta_positions() {
            self.max_position_embeddings.saturating_sub(self.pad_token_id as usize + 1)
        } else {
            self.max_position_embeddings
        }
    }
}

/// One sequence to encode: token ids and, for sentence pairs, segment ids (empty = all 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncoderInput {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment (token type) ids, one per token, or empty for all zeros.
    pub type_ids: Vec<u32>,
}

impl From<Vec<u32>> for EncoderInput {
    fn from(ids: Vec<u32>) -> Self {
        Self { ids, type_ids: Vec::new() }
    }
}

/// What sits on top of the encoder.
#[derive(Debug)]
enum Head {
    /// Hidden states only (sentence embedders).
    None,
    /// A linear classifier on every token (`*ForTokenClassification`).
    Token(Linear),
    /// BERT: pooler (dense + tanh on `[CLS]`) then a linear classifier.
    BertSequence { pooler: Linear, classifier: Linear },
    /// RoBERTa: dense + tanh on `<s>`, then `out_proj`.
    RobertaSequence { dense: Linear, out_proj: Linear },
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value projections stacked: `[3 * hidden, hidden]`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// A BERT or RoBERTa encoder with an optional classification head.
#[derive(Debug)]
pub struct Encoder {
    config: EncoderConfig,
    word: Embedding,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    head: Head,
    device: Device,
    /// The layers packed for the CPU fast path (AVX-512, or any CPU in bf16), when it applies.
    packed: Option<Vec<PackedLayer>>,
    precision: Precision,
}

/// Buffers of the CPU fast path, reused from layer to layer.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    a: Vec<f32>,
    inter: Vec<f32>,
}

/// A layer with its weights packed for [`PackedLinear`] or [`Bf16Linear`] and its norms as
/// plain vectors.
#[derive(Debug)]
struct PackedLayer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: (Vec<f32>, Vec<f32>),
    intermediate: Dense,
    output: Dense,
    out_norm: (Vec<f32>, Vec<f32>),
}

/// A dense layer of the fast path, in the encoder's precision.
#[derive(Debug)]
enum Dense {
    F32(PackedLinear),
    Bf16(Bf16Linear),
}

impl Dense {
    fn forward_into(&self, x: &[f32], m: usize, out: &mut Vec<f32>) {
        match self {
            Self::F32(l) => l.forward_into(x, m, out),
            Self::Bf16(l) => l.forward_into(x, m, out),
        }
    }
}

fn pack(l: &Linear, precision: Precision) -> candle_core::Result<Dense> {
    let (n, k) = l.weight().dims2()?;
    let w: Vec<f32> = l.weight().flatten_all()?.to_vec1()?;
    let b: Option<Vec<f32>> = l.bias().map(Tensor::to_vec1).transpose()?;
    Ok(match precision {
        Precision::F32 => Dense::F32(PackedLinear::new(&w, n, k, b.as_deref())),
        Precision::Bf16 => Dense::Bf16(Bf16Linear::new(&w, n, k, b.as_deref())?),
    })
}

fn pack_layers(layers: &[Layer], precision: Precision) -> candle_core::Result<Vec<PackedLayer>> {
    layers
        .iter()
        .map(|l| {
            Ok(PackedLayer {
                qkv: pack(&l.qkv, precision)?,
                attn_out: pack(&l.attn_out, precision)?,
                attn_norm: norm_vecs(&l.attn_norm)?,
                intermediate: pack(&l.intermediate, precision)?,
                output: pack(&l.output, precision)?,
                out_norm: norm_vecs(&l.out_norm)?,
            })
        })
        .collect()
}

fn norm_vecs(n: &LayerNorm) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let b = n.bias().map_or_else(|| Ok(vec![0f32; n.weight().elem_count()]), Tensor::to_vec1)?;
    Ok((n.weight().to_vec1()?, b))
}

/// Sum with 16 independent partial sums (vectorizes; the order differs from a sequential sum
/// only by rounding).
#[inline(always)]
fn lane_sum(xs: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 16];
    for (i, x) in xs.enumerate() {
        acc[i % 16] += x;
    }
    acc.iter().sum()
}

/// `x = LayerNorm(x + residual)` for each row, in place (biased variance, as PyTorch).
#[inline(always)]
fn add_norm_rows_body(x: &mut [f32], residual: &[f32], width: usize, (w, b): &(Vec<f32>, Vec<f32>), eps: f32) {
    for (row, res) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += r;
        }
        let mean = lane_sum(row.iter().copied()) / width as f32;
        let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), o) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - mean) * inv * g + o;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn add_norm_rows_avx512(x: &mut [f32], residual: &[f32], width: usize, wb: &(Vec<f32>, Vec<f32>), eps: f32) {
    add_norm_rows_body(x, residual, width, wb, eps);
}

/// Rows per task of the elementwise passes (residual + norm, GELU) on the thread pool.
const ROWS_PER_TASK: usize = 64;

/// [`add_norm_rows_body`], compiled for AVX-512 where the CPU has it, on blocks of rows in
/// parallel.
fn add_norm_rows(x: &mut [f32], residual: &[f32], width: usize, wb: &(Vec<f32>, Vec<f32>), eps: f32) {
    let step = ROWS_PER_TASK * width;
    x.par_chunks_mut(step).zip(residual.par_chunks(step)).for_each(|(x, residual)| {
        #[cfg(target_arch = "x86_64")]
        if crate::sgemm::available() {
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { add_norm_rows_avx512(x, residual, width, wb, eps) };
            return;
        }
        add_norm_rows_body(x, residual, width, wb, eps);
    });
}

fn layer_norm(vb: &VarBuilder, size: usize, eps: f64) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(size, "weight")?, vb.get(size, "bias")?, eps))
}

fn linear(vb: &VarBuilder, inp: usize, out: usize) -> candle_core::Result<Linear> {
    candle_nn::linear(inp, out, vb.clone())
}

impl Encoder {
    /// Loads `config.json` and `model.safetensors` from a model directory (as transformers
    /// or sentence-transformers saves it).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| ModelError::Load(format!("{}: {e}", config_path.display())))?;
        let config: EncoderConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::Load(format!("{}: {e}", config_path.display())))?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(ModelError::Load(format!("{}: no such file", weights.display())));
        }
        // SAFETY: the file is memory-mapped read-only and not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
        Self::new(config, &vb)
    }

    /// Builds the encoder from weights named as transformers names them, with or without the
    /// `bert.` / `roberta.` prefix of task models.
    pub fn new(config: EncoderConfig, vb: &VarBuilder) -> Result<Self, ModelError> {
        if let Some(kind) = config.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(ModelError::Load(format!("position_embedding_type {kind} is not supported")));
            }
        }
        if !matches!(config.hidden_act.as_str(), "gelu" | "gelu_new" | "relu") {
            return Err(ModelError::Load(format!("hidden_act {} is not supported", config.hidden_act)));
        }
        if !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(ModelError::Load("hidden_size is not a multiple of num_attention_heads".into()));
        }
        let base = ["bert", "roberta", "xlm-roberta", "model"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or_else(|| vb.clone(), |p| vb.pp(p));
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let emb = base.pp("embeddings");
        let word = candle_nn::embedding(config.vocab_size, h, emb.pp("word_embeddings"))?;
        let position = emb.get((config.max_position_embeddings, h), "position_embeddings.weight")?;
        let token_type = emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?;
        let emb_norm = layer_norm(&emb.pp("LayerNorm"), h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = base.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention.self");
            let (mut w, mut b) = (Vec::new(), Vec::new());
            for name in ["query", "key", "value"] {
                w.push(att.get((h, h), &format!("{name}.weight"))?);
                b.push(att.get(h, &format!("{name}.bias"))?);
            }
            let qkv = Linear::new(Tensor::cat(&w, 0)?, Some(Tensor::cat(&b, 0)?));
            layers.push(Layer {
                qkv,
                attn_out: linear(&l.pp("attention.output.dense"), h, h)?,
                attn_norm: layer_norm(&l.pp("attention.output.LayerNorm"), h, eps)?,
                intermediate: linear(&l.pp("intermediate.dense"), h, config.intermediate_size)?,
                output: linear(&l.pp("output.dense"), config.intermediate_size, h)?,
                out_norm: layer_norm(&l.pp("output.LayerNorm"), h, eps)?,
            });
        }
        let labels = config.id2label.as_ref().map_or(2, BTreeMap::len);
        let is = |suffix: &str| config.architectures.iter().any(|a| a.ends_with(suffix));
        let head = if vb.contains_tensor("classifier.weight") && is("ForTokenClassification") {
            Head::Token(linear(&vb.pp("classifier"), h, labels)?)
        } else if vb.contains_tensor("classifier.weight") {
            let classifier = vb.get_unchecked("classifier.weight")?;
            let n = classifier.dim(0)?;
            Head::BertSequence {
                pooler: linear(&base.pp("pooler.dense"), h, h)?,
                classifier: linear(&vb.pp("classifier"), h, n)?,
            }
        } else if vb.contains_tensor("classifier.out_proj.weight") {
            let n = vb.get_unchecked("classifier.out_proj.weight")?.dim(0)?;
            Head::RobertaSequence {
                dense: linear(&vb.pp("classifier.dense"), h, h)?,
                out_proj: linear(&vb.pp("classifier.out_proj"), h, n)?,
            }
        } else {
            Head::None
        };
        let device = vb.device().clone();
        let packed = if device.is_cpu() && crate::sgemm::available() {
            Some(pack_layers(&layers, Precision::F32)?)
        } else {
            None
        };
        let precision = Precision::F32;
        Ok(Self { config, word, position, token_type, emb_norm, layers, head, device, packed, precision })
    }

    /// Runs the dense layers in `precision` from now on (the weights are packed again).
    /// `bf16` runs on the CPU only; it is fast where the CPU has AMX-BF16 ([`crate::amx`]) and
    /// gives the same numbers (to f32 rounding), with no speed-up, elsewhere.
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        if precision == self.precision {
            return Ok(());
        }
        self.packed = match precision {
            Precision::Bf16 if !self.device.is_cpu() => {
                return Err(ModelError::Load("bf16 encoder layers run on the CPU only".into()));
            }
            Precision::Bf16 => Some(pack_layers(&self.layers, precision)?),
            Precision::F32 if self.device.is_cpu() && crate::sgemm::available() => {
                Some(pack_layers(&self.layers, precision)?)
            }
            Precision::F32 => None,
        };
        self.precision = precision;
        Ok(())
    }

    /// The number format of the dense layers.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    fn check(&self, inputs: &[EncoderInput]) -> Result<(), ModelError> {
        let max = self.config.max_tokens();
        for (i, s) in inputs.iter().enumerate() {
            if s.ids.len() > max {
                return Err(ModelError::Load(format!(
                    "sequence {i} has {} tokens; the encoder takes at most {max}",
                    s.ids.len()
                )));
            }
            if !s.type_ids.is_empty() && s.type_ids.len() != s.ids.len() {
                return Err(ModelError::Load(format!("sequence {i}: type_ids and ids differ in length")));
            }
            if let Some(&bad) = s.ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
                return Err(ModelError::Load(format!("sequence {i}: token id {bad} is outside the vocabulary")));
            }
        }
        Ok(())
    }

    /// Final hidden states of every token of every sequence, packed: `[total tokens, hidden]`,
    /// sequence after sequence.
    pub fn hidden_states(&self, inputs: &[EncoderInput]) -> Result<Tensor, ModelError> {
        self.check(inputs)?;
        let lens: Vec<usize> = inputs.iter().map(|s| s.ids.len()).collect();
        let total: usize = lens.iter().sum();
        let h = self.config.hidden_size;
        if total == 0 {
            return Ok(Tensor::zeros((0, h), DType::F32, &self.device)?);
        }
        let ids: Vec<u32> = inputs.iter().flat_map(|s| s.ids.iter().copied()).collect();
        // BERT counts positions from 0. RoBERTa (`create_position_ids_from_input_ids`) numbers
        // the non-padding tokens from `pad + 1` and gives padding tokens the position `pad`.
        let pad = self.config.pad_token_id;
        let positions: Vec<u32> = if self.config.roberta_positions() {
            inputs
                .iter()
                .flat_map(|s| {
                    let mut count = 0;
                    s.ids.iter().map(move |&t| {
                        if t == pad {
                            pad
                        } else {
                            count += 1;
                            pad + count
                        }
                    })
                })
                .collect()
        } else {
            lens.iter().flat_map(|&n| 0..n as u32).collect()
        };
        let types: Vec<u32> = inputs
            .iter()
            .flat_map(|s| if s.type_ids.is_empty() { vec![0; s.ids.len()] } else { s.type_ids.clone() })
            .collect();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let types = Tensor::from_vec(types, total, &self.device)?;
        let x = self.word.forward(&ids)?;
        let x = (x + self.position.index_select(&positions, 0)?)?;
        let x = (x + self.token_type.index_select(&types, 0)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        if let Some(packed) = &self.packed {
            let mut v: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let mut scratch = Scratch::default();
            for layer in packed {
                self.packed_layer(layer, &mut v, &lens, &mut scratch);
            }
            return Ok(Tensor::from_vec(v, (total, h), &self.device)?);
        }
        for layer in &self.layers {
            x = self.layer(layer, &x, &lens)?;
        }
        Ok(x)
    }

    /// One layer on the CPU fast path: packed products, fused GELU and norms on plain rows.
    fn packed_layer(&self, layer: &PackedLayer, x: &mut Vec<f32>, lens: &[usize], s: &mut Scratch) {
        let total: usize = lens.iter().sum();
        let h = self.config.hidden_size;
        let eps = self.config.layer_norm_eps as f32;
        layer.qkv.forward_into(x, total, &mut s.qkv);
        self.attention_into(&s.qkv, lens, &mut s.ctx);
        layer.attn_out.forward_into(&s.ctx, total, &mut s.a);
        add_norm_rows(&mut s.a, x, h, &layer.attn_norm, eps);
        layer.intermediate.forward_into(&s.a, total, &mut s.inter);
        match self.config.hidden_act.as_str() {
            "gelu" => gelu_erf_in_place(&mut s.inter),
            "gelu_new" => {
                for v in &mut s.inter {
                    *v = 0.5
                        * *v
                        * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (*v + 0.044_715 * *v * *v * *v)).tanh());
                }
            }
            _ => {
                for v in &mut s.inter {
                    *v = v.max(0.0);
                }
            }
        }
        // The layer's input is no longer needed: its output takes its place.
        layer.output.forward_into(&s.inter, total, x);
        add_norm_rows(x, &s.a, h, &layer.out_norm, eps);
    }

    fn layer(&self, layer: &Layer, x: &Tensor, lens: &[usize]) -> Result<Tensor, ModelError> {
        let qkv = layer.qkv.forward(x)?;
        let ctx = self.attention(&qkv, lens)?;
        let a = layer.attn_norm.forward(&(layer.attn_out.forward(&ctx)? + x)?)?;
        let inter = layer.intermediate.forward(&a)?;
        let inter = match self.config.hidden_act.as_str() {
            "gelu" => inter.apply_op1_no_bwd(&GeluErf)?,
            "gelu_new" => inter.gelu()?,
            _ => inter.relu()?,
        };
        Ok(layer.out_norm.forward(&(layer.output.forward(&inter)? + a)?)?)
    }

    /// Softmax attention of each sequence over itself, from the packed `[T, 3H]` projections.
    fn attention(&self, qkv: &Tensor, lens: &[usize]) -> Result<Tensor, ModelError> {
        let total = qkv.dim(0)?;
        let qkv: Vec<f32> = qkv.flatten_all()?.to_vec1()?;
        let out = self.attention_rows(&qkv, lens);
        Ok(Tensor::from_vec(out, (total, self.config.hidden_size), &self.device)?)
    }

    /// [`Self::attention`] on plain rows: `qkv` is `[T, 3H]`, the result `[T, H]`.
    fn attention_rows(&self, qkv: &[f32], lens: &[usize]) -> Vec<f32> {
        let mut out = Vec::new();
        self.attention_into(qkv, lens, &mut out);
        out
    }

    /// [`Self::attention_rows`] into `out` (resized; every element is written).
    fn attention_into(&self, qkv: &[f32], lens: &[usize], out: &mut Vec<f32>) {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let total: usize = lens.iter().sum();
        out.resize(total * h, 0.0);
        let scale = 1.0 / (d as f32).sqrt();
        // Split the output by sequence, then compute each (sequence, head) pair independently.
        let mut pieces: Vec<(usize, &mut [f32])> = Vec::with_capacity(lens.len());
        let mut rest = out.as_mut_slice();
        let mut start = 0;
        for &n in lens {
            let (piece, tail) = rest.split_at_mut(n * h);
            pieces.push((start, piece));
            rest = tail;
            start += n;
        }
        pieces.into_par_iter().zip(lens.par_iter()).for_each(|((start, piece), &n)| {
            attend(qkv, start, n, piece, h, heads, scale);
        });
    }

    /// Per-token class logits of a token classifier: `[total tokens, labels]`, packed.
    pub fn token_logits(&self, inputs: &[EncoderInput]) -> Result<Tensor, ModelError> {
        let Head::Token(classifier) = &self.head else {
            return Err(ModelError::Load("the model has no token-classification head".into()));
        };
        Ok(classifier.forward(&self.hidden_states(inputs)?)?)
    }

    /// Per-sequence class logits of a sequence classifier (e.g. a cross-encoder): `[n, labels]`.
    pub fn sequence_logits(&self, inputs: &[EncoderInput]) -> Result<Tensor, ModelError> {
        let hidden = self.hidden_states(inputs)?;
        let mut firsts = Vec::with_capacity(inputs.len());
        let mut at = 0u32;
        for s in inputs {
            if s.ids.is_empty() {
                return Err(ModelError::Load("an empty sequence has no first token to classify".into()));
            }
            firsts.push(at);
            at += s.ids.len() as u32;
        }
        let n = firsts.len();
        let first = hidden.index_select(&Tensor::from_vec(firsts, n, &self.device)?, 0)?;
        match &self.head {
            Head::BertSequence { pooler, classifier } => Ok(classifier.forward(&pooler.forward(&first)?.tanh()?)?),
            Head::RobertaSequence { dense, out_proj } => Ok(out_proj.forward(&dense.forward(&first)?.tanh()?)?),
            _ => Err(ModelError::Load("the model has no sequence-classification head".into())),
        }
    }

    /// Mean of the hidden states of each sequence (sentence-transformers' mean pooling), then
    /// optionally divided by its L2 norm (`max(norm, 1e-12)`, as `F.normalize` does).
    pub fn mean_pooled(&self, inputs: &[EncoderInput], normalize: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        let hidden = self.hidden_states(inputs)?;
        let h = self.config.hidden_size;
        let flat: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let mut out = Vec::with_capacity(inputs.len());
        let mut at = 0;
        for s in inputs {
            let n = s.ids.len();
            let mut v = vec![0f32; h];
            for t in 0..n {
                for (a, &x) in v.iter_mut().zip(&flat[(at + t) * h..][..h]) {
                    *a += x;
                }
            }
            let count = (n as f32).max(1e-9);
            for a in &mut v {
                *a /= count;
            }
            if normalize {
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                for a in &mut v {
                    *a /= norm;
                }
            }
            out.push(v);
            at += n;
        }
        Ok(out)
    }
}

/// Attention of one packed sequence (tokens `start..start + n` of `qkv`, `[T, 3H]`) over
/// itself, into `piece` (`[n, H]`).
#[inline(always)]
fn attend_body(qkv: &[f32], start: usize, n: usize, piece: &mut [f32], h: usize, heads: usize, scale: f32) {
    const L: usize = 16;
    let d = h / heads;
    // Keys transposed and padded to whole lanes (`[d, np]`), so that 16 scores at a time
    // accumulate in registers; values as rows (`[n, d]`).
    let np = n.div_ceil(L) * L;
    let mut scores = vec![0f32; np];
    let mut keys_t = vec![0f32; d * np];
    let mut values = vec![0f32; n * d];
    for head in 0..heads {
        for j in 0..n {
            let row = &qkv[(start + j) * 3 * h..][..3 * h];
            for (t, &k) in row[h + head * d..][..d].iter().enumerate() {
                keys_t[t * np + j] = k;
            }
            values[j * d..][..d].copy_from_slice(&row[2 * h + head * d..][..d]);
        }
        for i in 0..n {
            let q = &qkv[(start + i) * 3 * h + head * d..][..d];
            for j0 in (0..np).step_by(L) {
                let mut acc = [0f32; L];
                for (t, &qt) in q.iter().enumerate() {
                    let kt: &[f32; L] = keys_t[t * np + j0..][..L].try_into().expect("a lane of keys");
                    for l in 0..L {
                        acc[l] += qt * kt[l];
                    }
                }
                for l in 0..L {
                    scores[j0 + l] = acc[l] * scale;
                }
            }
            let live = &mut scores[..n];
            let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in live.iter_mut() {
                *s = exp_f32(*s - max);
                sum += *s;
            }
            let inv = 1.0 / sum;
            let o = &mut piece[i * h + head * d..][..d];
            let mut c0 = 0;
            while c0 < d {
                let w = L.min(d - c0);
                let mut acc = [0f32; L];
                if w == L {
                    for (&p, v) in live.iter().zip(values.chunks_exact(d)) {
                        let v: &[f32; L] = v[c0..c0 + L].try_into().expect("a lane of values");
                        for l in 0..L {
                            acc[l] += p * v[l];
                        }
                    }
                } else {
                    for (&p, v) in live.iter().zip(values.chunks_exact(d)) {
                        for l in 0..w {
                            acc[l] += p * v[c0 + l];
                        }
                    }
                }
                for l in 0..w {
                    o[c0 + l] = acc[l] * inv;
                }
                c0 += w;
            }
        }
    }
}

/// [`attend_body`] in AVX-512 intrinsics: eight queries at a time against 32 keys (scores) or
/// 32 value lanes (outputs), sixteen independent fused sums in registers; the softmax in
/// 16 lanes with [`exp_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(qkv: &[f32], start: usize, n: usize, piece: &mut [f32], h: usize, heads: usize, scale: f32) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_add_ps, _mm512_mask_loadu_ps, _mm512_mask_storeu_ps,
        _mm512_max_ps, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps, _mm512_sub_ps,
    };
    const L: usize = 16;
    const Q: usize = 8;
    let d = h / heads;
    // Keys transposed, padded to pairs of lanes (`[d, np]`); values padded to pairs of lanes
    // (`[n, dp]`); the head's queries as rows padded to whole groups (`[nq, d]`).
    let np = n.div_ceil(2 * L) * 2 * L;
    let dp = d.div_ceil(2 * L) * 2 * L;
    let nq = n.div_ceil(Q) * Q;
    let mut keys_t = vec![0f32; d * np];
    let mut values = vec![0f32; n * dp];
    let mut queries = vec![0f32; nq * d];
    let mut probs = vec![0f32; Q * np];
    let mut inv = [0f32; Q];
    let lane_mask = |w: usize| -> u16 {
        if w >= L {
            0xffff
        } else {
            ((1u32 << w) - 1) as u16
        }
    };
    for head in 0..heads {
        for j in 0..n {
            let row = &qkv[(start + j) * 3 * h..][..3 * h];
            queries[j * d..][..d].copy_from_slice(&row[head * d..][..d]);
            for (t, &k) in row[h + head * d..][..d].iter().enumerate() {
                *keys_t.get_unchecked_mut(t * np + j) = k;
            }
            values[j * dp..][..d].copy_from_slice(&row[2 * h + head * d..][..d]);
        }
        let (kp, vp, qp, pp) = (keys_t.as_ptr(), values.as_ptr(), queries.as_ptr(), probs.as_mut_ptr());
        for i0 in (0..n).step_by(Q) {
            let qn = Q.min(n - i0);
            for j0 in (0..np).step_by(2 * L) {
                let mut acc: [[__m512; 2]; Q] = [[_mm512_setzero_ps(); 2]; Q];
                for t in 0..d {
                    let k0 = _mm512_loadu_ps(kp.add(t * np + j0));
                    let k1 = _mm512_loadu_ps(kp.add(t * np + j0 + L));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let q = _mm512_set1_ps(*qp.add((i0 + r) * d + t));
                        a[0] = _mm512_fmadd_ps(q, k0, a[0]);
                        a[1] = _mm512_fmadd_ps(q, k1, a[1]);
                    }
                }
                let sc = _mm512_set1_ps(scale);
                for (r, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(pp.add(r * np + j0), _mm512_mul_ps(a[0], sc));
                    _mm512_storeu_ps(pp.add(r * np + j0 + L), _mm512_mul_ps(a[1], sc));
                }
            }
            for (r, inv) in inv.iter_mut().enumerate().take(qn) {
                let row = pp.add(r * np);
                let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
                for j0 in (0..n).step_by(L) {
                    let x = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), lane_mask(n - j0), row.add(j0));
                    mx = _mm512_max_ps(mx, x);
                }
                let max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
                let mut sum = _mm512_setzero_ps();
                for j0 in (0..n).step_by(L) {
                    let m = lane_mask(n - j0);
                    let e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(row.add(j0)), max));
                    _mm512_mask_storeu_ps(row.add(j0), m, e);
                    sum = _mm512_mask_add_ps(sum, m, sum, e);
                }
                *inv = 1.0 / _mm512_reduce_add_ps(sum);
            }
            for c0 in (0..dp).step_by(2 * L) {
                let mut acc: [[__m512; 2]; Q] = [[_mm512_setzero_ps(); 2]; Q];
                for j in 0..n {
                    let v0 = _mm512_loadu_ps(vp.add(j * dp + c0));
                    let v1 = _mm512_loadu_ps(vp.add(j * dp + c0 + L));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let p = _mm512_set1_ps(*pp.add(r * np + j));
                        a[0] = _mm512_fmadd_ps(p, v0, a[0]);
                        a[1] = _mm512_fmadd_ps(p, v1, a[1]);
                    }
                }
                for (r, a) in acc.iter().enumerate().take(qn) {
                    let o = piece.as_mut_ptr().add((i0 + r) * h + head * d);
                    let s = _mm512_set1_ps(inv[r]);
                    if c0 < d {
                        _mm512_mask_storeu_ps(o.add(c0), lane_mask(d - c0), _mm512_mul_ps(a[0], s));
                    }
                    if c0 + L < d {
                        _mm512_mask_storeu_ps(o.add(c0 + L), lane_mask(d - c0 - L), _mm512_mul_ps(a[1], s));
                    }
                }
            }
        }
    }
}

/// [`exp_f32`] on 16 lanes (the same reduction and polynomial, fused multiply-adds, and the
/// power of two applied by `vscalefps`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps,
        _mm512_roundscale_ps, _mm512_scalef_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.336_54)), _mm512_setzero_ps());
    let n =
        _mm512_roundscale_ps::<0x09>(_mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), _mm512_set1_ps(0.5)));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
    let r2 = _mm512_mul_ps(r, r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(y, n)
}

/// [`attend_body`], or its AVX-512 form where the CPU has it.
fn attend(qkv: &[f32], start: usize, n: usize, piece: &mut [f32], h: usize, heads: usize, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::sgemm::available() {
        // SAFETY: the CPU has AVX-512F (checked above); every pointer stays inside its buffer:
        // rows `< nq` of queries, columns `< np` of keys and probabilities, `< dp` of values,
        // and the stores into `piece` are masked to the head's `d` columns of live queries.
        unsafe {
            attend_avx512(qkv, start, n, piece, h, heads, scale);
            crate::zmm::clear_upper_state();
        }
        return;
    }
    attend_body(qkv, start, n, piece, h, heads, scale);
}

/// e^x for x ≤ 0 (softmax after subtracting the maximum) as Cephes' `expf` computes it
/// (range reduction by ln 2, degree-5 polynomial, within 2 ulp); branch-free, so a loop of it
/// vectorizes. Inputs below -87.3 give 2^-126 instead of a denormal or 0.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 0.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r2 + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf for f32 as Eigen computes it: the input clamped to [-4, 4] (erf is ±1 in f32 beyond),
/// then an odd rational polynomial. Branch-free, so a slice of it vectorizes.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// BERT's exact GELU, `x/2 · (1 + erf(x/√2))`, in place (vectorizes).
#[inline(always)]
fn gelu_erf_body(xs: &mut [f32]) {
    for x in xs {
        *x = 0.5 * *x * (1.0 + erf_f32(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_erf_avx512(xs: &mut [f32]) {
    gelu_erf_body(xs);
}

/// [`gelu_erf_body`], compiled for AVX-512 where the CPU has it, on blocks in parallel.
fn gelu_erf_in_place(xs: &mut [f32]) {
    xs.par_chunks_mut(ROWS_PER_TASK * 1024).for_each(|xs| {
        #[cfg(target_arch = "x86_64")]
        if crate::sgemm::available() {
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { gelu_erf_avx512(xs) };
            return;
        }
        gelu_erf_body(xs);
    });
}

/// The exact (erf-based) GELU of BERT's `gelu` as a candle op.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu-erf takes f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu-erf takes a contiguous tensor");
        };
        let out: Vec<f32> =
            data[start..end].iter().map(|&x| 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Splits a packed `[total, …]` tensor back into one tensor per sequence.
pub fn unpack(packed: &Tensor, lens: &[usize]) -> Result<Vec<Tensor>, ModelError> {
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &n in lens {
        out.push(packed.narrow(0, at, n)?);
        at += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 + i as f32 * 4.35e-4;
            let (want, got) = (x.exp(), exp_f32(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert!(exp_f32(-1000.0) < 1e-37);
    }

    /// Softmax attention of one sequence in f64, `qkv` `[n, 3h]` → `[n, h]`.
    fn attention_reference(qkv: &[f32], n: usize, h: usize, heads: usize) -> Vec<f32> {
        let d = h / heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f32; n * h];
        for head in 0..heads {
            for i in 0..n {
                let q = &qkv[i * 3 * h + head * d..][..d];
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        let k = &qkv[j * 3 * h + h + head * d..][..d];
                        q.iter().zip(k).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * scale
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..d {
                    let v: f64 = (0..n).map(|j| e[j] * f64::from(qkv[j * 3 * h + 2 * h + head * d + c])).sum();
                    out[i * h + head * d + c] = (v / sum) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn attention_equals_the_reference_for_odd_shapes() {
        let mut state = 99u32;
        let mut rnd = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 4.0
        };
        // (tokens, hidden, heads): MiniLM's head width 32, XLM-R's 64, tiny models' 4 and 12.
        for (n, h, heads) in [(1, 64, 2), (5, 384, 12), (17, 16, 4), (33, 128, 2), (100, 48, 4), (42, 96, 3)] {
            let qkv: Vec<f32> = (0..n * 3 * h).map(|_| rnd()).collect();
            let want = attention_reference(&qkv, n, h, heads);
            let scale = 1.0 / ((h / heads) as f32).sqrt();
            let mut fast = vec![f32::NAN; n * h];
            attend(&qkv, 0, n, &mut fast, h, heads, scale);
            let mut body = vec![f32::NAN; n * h];
            attend_body(&qkv, 0, n, &mut body, h, heads, scale);
            for (name, got) in [("dispatched", &fast), ("portable", &body)] {
                let worst = want.iter().zip(got.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 2e-5, "{name} n={n} h={h} heads={heads}: max |Δ| {worst}");
            }
        }
    }

    #[test]
    fn gelu_matches_candle_erf_gelu() {
        let xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 6e-4).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        let want: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
        let got: Vec<f32> = t.apply_op1_no_bwd(&GeluErf).unwrap().to_vec1().unwrap();
        let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-6, "max |Δ| {worst}");
        eprintln!("gelu max |Δ| {worst:e}");
        assert!((erf_f32(10.0) - 1.0).abs() < 1e-6);
        assert!((erf_f32(-10.0) + 1.0).abs() < 1e-6);
    }
}
