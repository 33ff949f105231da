//! One decoder for the Llama family — Llama 2/3/3.1/3.2, SmolLM2, Mistral, Qwen2/2.5 — after
//! transformers' `modeling_llama.py` / `modeling_mistral.py` / `modeling_qwen2.py` (4.46.3):
//! q/k/v biases (Qwen2), a sliding attention window (Mistral) and tied embeddings are
//! configuration, not copies of the model.
//!
//! Attention runs in query chunks against the KV cache, so that no `n × n` score matrix is
//! materialised: peak memory is the weights, the cache and `O(chunk × n)`. Everything is plain
//! tensor arithmetic (the softmax included), so the forward pass stays differentiable.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use crate::config::{token_ids, ConfigError, HfConfig};
use crate::rope::{RopeParams, RopeScaling, RotaryState};

/// `config.json` of a Llama-family model (the fields the decoder reads).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaHfConfig {
    /// `llama`, `mistral` or `qwen2`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Width, heads and positions (shared with every decoder config).
    #[serde(flatten)]
    pub positions: HfConfig,
    /// Biases on q/k/v/o (Llama's `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// lm_head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Mistral's attention window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2 applies its window only with this set.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// End-of-sequence token id(s): a number or a list.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

/// The resolved decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Bias on q, k, v (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o (Llama with `attention_bias`).
    pub o_bias: bool,
    /// lm_head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// A key is visible to a query at most `window - 1` positions after it.
    pub sliding_window: Option<usize>,
    /// Rotary embedding parameters.
    pub rope: RopeParams,
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Bytes of KV cache for `tokens` tokens with elements of `dtype_bytes` bytes:
    /// keys and values of every layer and key/value head.
    pub fn kv_cache_bytes(&self, tokens: usize, dtype_bytes: usize) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * tokens * dtype_bytes
    }

    /// Bytes of the largest transient attention buffer for a forward pass of `queries` new
    /// tokens over `tokens` cached ones (scores and probabilities of one query chunk, f32).
    pub fn attention_scratch_bytes(&self, queries: usize, tokens: usize, chunk: usize) -> usize {
        2 * self.num_heads * queries.min(chunk) * tokens * 4
    }
}

impl LlamaHfConfig {
    /// Resolves the raw config, with an optional RoPE scaling override.
    pub fn into_config(self, rope_override: Option<RopeScaling>) -> Result<Config, ConfigError> {
        if self.hidden_act != "silu" {
            return Err(ConfigError::Unsupported(format!("hidden_act `{}`", self.hidden_act)));
        }
        let rope = self.positions.rope_params_with(rope_override)?;
        let head_dim = rope.head_dim;
        let (qkv_bias, o_bias, sliding_window) = match self.model_type.as_str() {
            "llama" => (self.attention_bias, self.attention_bias, None),
            "mistral" => (false, false, self.sliding_window),
            "qwen2" => (true, false, if self.use_sliding_window == Some(true) { self.sliding_window } else { None }),
            other => return Err(ConfigError::Unsupported(format!("model_type `{other}`"))),
        };
        Ok(Config {
            vocab_size: self.vocab_size,
            hidden_size: self.positions.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.positions.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.positions.num_attention_heads),
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            qkv_bias,
            o_bias,
            tie_word_embeddings: self.tie_word_embeddings,
            sliding_window,
            eos_token_ids: self.eos_token_id.as_ref().map(token_ids).unwrap_or_default(),
            rope,
        })
    }
}

/// A causal language model with a KV cache: the interface every runtime model implements.
pub trait CausalLm {
    /// Logits `[batch, seq, vocab]` for `ids` `[batch, seq]` placed after the `offset` tokens
    /// already in the cache; the new keys and values are appended to it.
    fn forward(&mut self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor>;
    /// Like [`forward`](Self::forward), but only the logits of the last position, `[batch, vocab]`
    /// (what generation needs; a model may skip the LM head for the other positions).
    fn forward_last(&mut self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let logits = self.forward(ids, offset)?;
        let n = logits.dim(1)?;
        logits.narrow(1, n - 1, 1)?.squeeze(1)
    }
    /// Empties the KV cache and resets position-dependent state (dynamic-NTK frequencies).
    fn reset(&mut self);
    /// Empties the KV cache only; the rotary state carries over, as transformers' rotary
    /// module does between calls.
    fn clear_cache(&mut self);
    /// Prepares the KV cache for `tokens` tokens in all, so that it is allocated once.
    fn reserve(&mut self, tokens: usize) {
        let _ = tokens;
    }
    /// The model's configuration.
    fn config(&self) -> &Config;
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// `x * rsqrt(mean(x²) + eps) * weight`, in f32.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if crate::fused::applies(&[x, &self.weight]) {
            return crate::fused::rms_norm(x, &self.weight, self.eps);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// A weight matrix `[out, in]` applied as `x · Wᵀ + b`: dense (safetensors, differentiable) or
/// quantized (GGUF; candle's quantized matmul, inference only).
pub enum Proj {
    /// Dense weights in the model's dtype.
    Dense(Linear),
    /// Quantized weights (candle's kernels) and an optional f32 bias.
    Quant(QMatMul, Option<Tensor>),
    /// Q4_0/Q4_1/Q8_0 weights (longctx's kernels) and an optional f32 bias.
    Packed(crate::qmatmul::QuantMatMul, Option<Tensor>),
    /// NF4 weights (bitsandbytes' QLoRA storage), dequantized for each product, and an
    /// optional f32 bias.
    Nf4(std::sync::Arc<crate::nf4::Nf4Matrix>, Option<Tensor>),
}

impl Module for Proj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(l) => crate::frozen::forward(l, x),
            Self::Quant(w, None) => w.forward(x),
            Self::Quant(w, Some(b)) => w.forward(x)?.broadcast_add(b),
            Self::Packed(w, None) => w.forward(x),
            Self::Packed(w, Some(b)) => w.forward(x)?.broadcast_add(b),
            Self::Nf4(w, b) => crate::frozen::frozen_product(&crate::frozen::Frozen::Nf4(w.clone()), b.as_ref(), x),
        }
    }
}

/// How [`Llama::quantize_weights`] stores the projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// llama.cpp's blocks (the LM head too), run by longctx's kernels.
    Blocks(crate::qmatmul::BlockKind),
    /// bitsandbytes' NF4 with double-quantized scales (QLoRA's storage; the LM head stays as it
    /// is, as bitsandbytes leaves it), dequantized for each product.
    Nf4,
}

impl From<crate::qmatmul::BlockKind> for WeightFormat {
    fn from(kind: crate::qmatmul::BlockKind) -> Self {
        Self::Blocks(kind)
    }
}

/// `p` with its dense weight quantized to `format` (`name`: the tensor, for errors); other
/// projections as they are.
fn quantize_proj(p: &mut Proj, format: WeightFormat, name: &str) -> candle_core::Result<()> {
    let Proj::Dense(l) = p else { return Ok(()) };
    let (rows, cols) = l.weight().dims2()?;
    let kind = match format {
        WeightFormat::Blocks(kind) => kind,
        WeightFormat::Nf4 => {
            let w = l.weight().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let matrix = crate::nf4::Nf4Matrix::quantize(rows, cols, &w)
                .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
            let bias = l.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
            *p = Proj::Nf4(std::sync::Arc::new(matrix), bias);
            return Ok(());
        }
    };
    if cols % 32 != 0 {
        candle_core::bail!("{name}: {cols} columns, not a whole number of 32-value {kind:?} blocks");
    }
    let w = l.weight().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let blocks = crate::quantize::quantize(kind, &w);
    let matrix = crate::qmatmul::QuantMatrix::from_ggml(kind, rows, cols, &blocks)?;
    let bias = l.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
    *p = Proj::Packed(crate::qmatmul::QuantMatMul::new(std::sync::Arc::new(matrix)), bias);
    Ok(())
}

/// A LoRA update of one projection: `x ↦ scale · (x · Aᵀ) · Bᵀ`, with `A` `[r, in]` and `B`
/// `[out, r]` in f32 (PEFT's `lora_A` / `lora_B` weights).
#[derive(Debug, Clone)]
pub struct Lora {
    /// `lora_A.weight`, `[r, in]`.
    pub a: Tensor,
    /// `lora_B.weight`, `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub scale: f64,
}

/// Inverted dropout on the input of the LoRA updates while training: probability `p`, masks
/// drawn from `seed` and the projection's place, so that recomputing a layer (gradient
/// checkpointing) draws the same masks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraDropout {
    /// Probability of zeroing an input element.
    pub p: f32,
    /// Seed of this forward pass.
    pub seed: u64,
}

impl LoraDropout {
    fn mask(&self, x: &Tensor, layer: usize, part: Part) -> candle_core::Result<Tensor> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ ((layer as u64) << 32) ^ ((part as u64 + 1) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let keep = 1.0 / (1.0 - self.p);
        let values: Vec<f32> =
            (0..x.elem_count()).map(|_| if rng.random::<f32>() < self.p { 0.0 } else { keep }).collect();
        Tensor::from_vec(values, x.shape(), x.device())
    }
}

/// A projection with an optional LoRA update.
struct Adapted {
    base: Proj,
    lora: Option<Lora>,
}

impl Adapted {
    fn new(base: Proj) -> Self {
        Self { base, lora: None }
    }

    /// `base(x) + scale · (dropout(x) · Aᵀ) · Bᵀ`; the update runs in f32 (as PEFT runs it in
    /// the adapter's dtype).
    fn forward(&self, x: &Tensor, dropout: Option<(LoraDropout, usize, Part)>) -> candle_core::Result<Tensor> {
        let Some(lora) = &self.lora else { return self.base.forward(x) };
        let mask = match dropout.filter(|(d, ..)| d.p > 0.0) {
            Some((d, layer, part)) => Some(d.mask(x, layer, part)?),
            None => None,
        };
        let frozen = match &self.base {
            Proj::Dense(linear) => Some((crate::frozen::Frozen::Dense(linear.weight().clone()), linear.bias())),
            Proj::Packed(w, bias) => Some((crate::frozen::Frozen::Quant(std::sync::Arc::clone(&w.0)), bias.as_ref())),
            Proj::Nf4(w, bias) => Some((crate::frozen::Frozen::Nf4(std::sync::Arc::clone(w)), bias.as_ref())),
            Proj::Quant(..) => None,
        };
        if let Some((w, bias)) = frozen {
            if let Some(y) = crate::frozen::lora_forward(&w, bias, &lora.a, &lora.b, lora.scale, x, mask.clone())? {
                return Ok(y);
            }
        }
        let y = self.base.forward(x)?;
        let mut xa = x.to_dtype(DType::F32)?;
        if let Some(mask) = mask {
            xa = (xa * mask)?;
        }
        let update = (xa.broadcast_matmul(&lora.a.t()?)?.broadcast_matmul(&lora.b.t()?)? * lora.scale)?;
        let update = update.to_dtype(y.dtype())?;
        y + update
    }
}

/// The token embedding: dense, or quantized rows dequantized on lookup.
pub enum Embed {
    /// Dense matrix `[vocab, hidden]`.
    Dense(Embedding),
    /// Quantized matrix `[vocab, hidden]`.
    Quant(QMatMul),
    /// Q4_0/Q4_1/Q8_0 matrix `[vocab, hidden]` (longctx's kernels; shared with a tied LM head).
    Packed(std::sync::Arc<crate::qmatmul::QuantMatrix>),
}

impl Embed {
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(e) => e.forward(ids),
            Self::Quant(q) => q.embedding(ids),
            Self::Packed(m) => {
                let flat = ids.flatten_all()?.to_vec1::<u32>()?;
                let mut dims = ids.dims().to_vec();
                dims.push(m.cols());
                Tensor::from_vec(m.rows_f32(&flat), dims, ids.device())
            }
        }
    }
}

/// The parts of a decoder a weight source provides; names follow Hugging Face checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `q_proj`.
    Q,
    /// `k_proj`.
    K,
    /// `v_proj`.
    V,
    /// `o_proj`.
    O,
    /// `gate_proj`.
    Gate,
    /// `up_proj`.
    Up,
    /// `down_proj`.
    Down,
    /// `input_layernorm`.
    InputNorm,
    /// `post_attention_layernorm`.
    PostNorm,
}

/// Where the decoder's weights come from (a safetensors checkpoint, a GGUF file).
pub trait WeightSource {
    /// Projection `part` of layer `layer`, `[out, in]`, with a bias when `bias`.
    fn proj(&self, layer: usize, part: Part, in_dim: usize, out_dim: usize, bias: bool) -> candle_core::Result<Proj>;
    /// Norm weight `part` of layer `layer`.
    fn norm(&self, layer: usize, part: Part, size: usize) -> candle_core::Result<Tensor>;
    /// The final norm's weight.
    fn final_norm(&self, size: usize) -> candle_core::Result<Tensor>;
    /// The token embedding.
    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embed>;
    /// The LM head; `embed` is the embedding, for tied weights.
    fn lm_head(&self, hidden: usize, vocab: usize, tied: bool, embed: &Embed) -> candle_core::Result<Proj>;
}

/// A Hugging Face checkpoint (`model.layers.0.self_attn.q_proj.weight`, …) through a
/// [`VarBuilder`].
pub struct HfWeights<'a>(pub VarBuilder<'a>);

impl Part {
    /// The seven projections of a decoder layer, in checkpoint order.
    pub const PROJECTIONS: [Part; 7] = [Part::Q, Part::K, Part::V, Part::O, Part::Gate, Part::Up, Part::Down];

    /// The module's name as PEFT's `target_modules` names it (`q_proj`, …, `down_proj`).
    pub fn module_name(self) -> &'static str {
        let path = self.hf_path();
        path.rsplit('.').next().unwrap_or(path)
    }

    /// The projection a PEFT module name (`q_proj` … `down_proj`) stands for.
    pub fn from_module_name(name: &str) -> Option<Part> {
        Self::PROJECTIONS.into_iter().find(|p| p.module_name() == name)
    }

    /// The projection's `(in, out)` features in a model of `config`, or `None` for a norm.
    pub fn features(self, config: &Config) -> Option<(usize, usize)> {
        let (h, kv, i) =
            (config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim, config.intermediate_size);
        let hidden = config.hidden_size;
        Some(match self {
            Part::Q => (hidden, h),
            Part::K | Part::V => (hidden, kv),
            Part::O => (h, hidden),
            Part::Gate | Part::Up => (hidden, i),
            Part::Down => (i, hidden),
            Part::InputNorm | Part::PostNorm => return None,
        })
    }

    /// The path of the part inside a layer (`self_attn.q_proj`, `mlp.down_proj`, …).
    pub fn hf_path(self) -> &'static str {
        match self {
            Part::Q => "self_attn.q_proj",
            Part::K => "self_attn.k_proj",
            Part::V => "self_attn.v_proj",
            Part::O => "self_attn.o_proj",
            Part::Gate => "mlp.gate_proj",
            Part::Up => "mlp.up_proj",
            Part::Down => "mlp.down_proj",
            Part::InputNorm => "input_layernorm",
            Part::PostNorm => "post_attention_layernorm",
        }
    }
}

impl WeightSource for HfWeights<'_> {
    fn proj(&self, layer: usize, part: Part, in_dim: usize, out_dim: usize, bias: bool) -> candle_core::Result<Proj> {
        let vb = self.0.pp(format!("model.layers.{layer}.{}", part.hf_path()));
        let l = if bias {
            candle_nn::linear(in_dim, out_dim, vb)?
        } else {
            candle_nn::linear_no_bias(in_dim, out_dim, vb)?
        };
        Ok(Proj::Dense(l))
    }

    fn norm(&self, layer: usize, part: Part, size: usize) -> candle_core::Result<Tensor> {
        self.0.pp(format!("model.layers.{layer}.{}", part.hf_path())).get(size, "weight")
    }

    fn final_norm(&self, size: usize) -> candle_core::Result<Tensor> {
        self.0.pp("model.norm").get(size, "weight")
    }

    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embed> {
        Ok(Embed::Dense(candle_nn::embedding(vocab, hidden, self.0.pp("model.embed_tokens"))?))
    }

    fn lm_head(&self, hidden: usize, vocab: usize, tied: bool, embed: &Embed) -> candle_core::Result<Proj> {
        match (tied, embed) {
            (true, Embed::Dense(e)) => Ok(Proj::Dense(Linear::new(e.embeddings().clone(), None))),
            (true, Embed::Quant(_) | Embed::Packed(_)) => {
                candle_core::bail!("a dense checkpoint with a quantized embedding")
            }
            (false, _) => Ok(Proj::Dense(candle_nn::linear_no_bias(hidden, vocab, self.0.pp("lm_head"))?)),
        }
    }
}

struct Attention {
    q: Adapted,
    k: Adapted,
    v: Adapted,
    o: Adapted,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    sliding_window: Option<usize>,
    cache: KvCache,
    /// Queries per attention chunk.
    chunk: usize,
    /// The layer's index (for LoRA dropout masks).
    layer: usize,
}

/// `x * cos + rotate_half(x) * sin` for `x` `[b, h, s, d]` and cos/sin `[s, d]`.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if crate::fused::applies(&[x]) && cos.dtype() == DType::F32 {
        return crate::fused::rope(x, cos, sin);
    }
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// Keys and values of the tokens seen so far, `[b, kvh, capacity, d]`, written in place:
/// appending copies only the new tokens (capacity grows by half when full, or to what
/// [`CausalLm::reserve`] asked for). With a `dtype` the rows are stored in it (f16 halves the
/// cache; attention widens them again as it reads them), otherwise in the model's dtype.
#[derive(Default)]
struct KvCache {
    buffers: Option<(Tensor, Tensor)>,
    len: usize,
    reserved: usize,
    dtype: Option<DType>,
}

impl KvCache {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `k`, `v` and returns the keys and values attention reads: into an empty cache,
    /// the fresh ones themselves (in the model's dtype, not the cache's); otherwise everything
    /// cached.
    fn push(&mut self, k: Tensor, v: Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        if self.is_empty() {
            self.append(&k, &v)?;
            Ok((k, v))
        } else {
            self.append(&k, &v)
        }
    }

    /// Appends `k`, `v` (`[b, kvh, s, d]`) and returns views of everything cached.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, kvh, s, d) = k.dims4()?;
        let dtype = self.dtype.unwrap_or(k.dtype());
        let (k, v) = (&k.to_dtype(dtype)?, &v.to_dtype(dtype)?);
        let needed = self.len + s;
        let capacity = self.buffers.as_ref().map_or(0, |(kb, _)| kb.dim(2).unwrap_or(0));
        if needed > capacity || self.buffers.as_ref().is_some_and(|(kb, _)| kb.dtype() != dtype) {
            let new_capacity = needed.max(capacity + capacity / 2).max(self.reserved).max(64);
            let kb = Tensor::zeros((b, kvh, new_capacity, d), dtype, k.device())?;
            let vb = Tensor::zeros((b, kvh, new_capacity, d), dtype, v.device())?;
            if let Some((old_k, old_v)) = self.buffers.as_ref().filter(|_| self.len > 0) {
                kb.slice_set(&old_k.narrow(2, 0, self.len)?.to_dtype(dtype)?.contiguous()?, 2, 0)?;
                vb.slice_set(&old_v.narrow(2, 0, self.len)?.to_dtype(dtype)?.contiguous()?, 2, 0)?;
            }
            self.buffers = Some((kb, vb));
        }
        let (kb, vb) = self.buffers.as_ref().expect("allocated above");
        kb.slice_set(&k.contiguous()?.detach(), 2, self.len)?;
        vb.slice_set(&v.contiguous()?.detach(), 2, self.len)?;
        self.len = needed;
        Ok((kb.narrow(2, 0, self.len)?, vb.narrow(2, 0, self.len)?))
    }
}

/// The decoding state of one sequence kept outside the model: its KV cache per layer and its
/// rotary state. Several sequences decode together with [`Llama::decode_batch`]; a prompt is
/// prefilled into one with [`Llama::with_sequence`].
pub struct Sequence {
    caches: Vec<KvCache>,
    rotary: RotaryState,
}

impl Sequence {
    /// Tokens in the sequence's cache.
    pub fn len(&self) -> usize {
        self.caches.first().map_or(0, |c| c.len)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens the cache's buffers have room for (what it occupies in memory).
    pub fn capacity(&self) -> usize {
        self.caches.first().and_then(|c| c.buffers.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }
}

/// Target size of one query chunk's f32 attention scores.
const SCORES_BYTES: usize = 16 << 20;

/// Default number of queries per attention chunk.
pub const ATTENTION_CHUNK: usize = 256;

impl Attention {
    fn new(cfg: &Config, i: usize, src: &dyn WeightSource) -> candle_core::Result<Self> {
        let (h, kvh, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        Ok(Self {
            q: Adapted::new(src.proj(i, Part::Q, cfg.hidden_size, h * d, cfg.qkv_bias)?),
            k: Adapted::new(src.proj(i, Part::K, cfg.hidden_size, kvh * d, cfg.qkv_bias)?),
            v: Adapted::new(src.proj(i, Part::V, cfg.hidden_size, kvh * d, cfg.qkv_bias)?),
            o: Adapted::new(src.proj(i, Part::O, h * d, cfg.hidden_size, cfg.o_bias)?),
            num_heads: h,
            num_kv_heads: kvh,
            head_dim: d,
            sliding_window: cfg.sliding_window,
            cache: KvCache::default(),
            chunk: ATTENTION_CHUNK,
            layer: i,
        })
    }

    /// Queries, keys (both rotated) and values `[b, heads, s, d]` of `x`.
    fn project(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        dropout: Option<LoraDropout>,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, s, _) = x.dims3()?;
        let split = |t: Tensor, heads: usize| t.reshape((b, s, heads, self.head_dim))?.transpose(1, 2)?.contiguous();
        let at = |part| dropout.map(|d| (d, self.layer, part));
        let q = apply_rope(&split(self.q.forward(x, at(Part::Q))?, self.num_heads)?, cos, sin)?;
        let k = apply_rope(&split(self.k.forward(x, at(Part::K))?, self.num_kv_heads)?, cos, sin)?;
        let v = split(self.v.forward(x, at(Part::V))?, self.num_kv_heads)?;
        Ok((q, k, v))
    }

    fn forward(&mut self, x: &Tensor, cos: &Tensor, sin: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (q, k, v) = self.project(x, cos, sin, None)?;
        let (k, v) = self.cache.push(k, v)?;
        let out = self.attend(&q, &k, &v, offset)?;
        self.o.forward(&out, None)
    }

    /// Attention of independent sequences packed one after another in `x` `[1, Σ lens, h]`
    /// (block-diagonal causal attention: no token sees another sequence; nothing is spent on
    /// padding), without the KV cache: the training forward pass. `cos` and `sin` hold each
    /// sequence's own positions.
    fn forward_packed(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        lens: &[usize],
        dropout: Option<LoraDropout>,
    ) -> candle_core::Result<Tensor> {
        let (q, k, v) = self.project(x, cos, sin, dropout)?;
        let mut outputs = Vec::with_capacity(lens.len());
        let mut start = 0;
        for &len in lens {
            let part = |t: &Tensor| t.narrow(2, start, len);
            outputs.push(self.attend(&part(&q)?, &part(&k)?, &part(&v)?, 0)?);
            start += len;
        }
        let out = if outputs.len() == 1 { outputs.pop().expect("one sequence") } else { Tensor::cat(&outputs, 1)? };
        self.o.forward(&out, dropout.map(|d| (d, self.layer, Part::O)))
    }

    /// Causal attention of queries `q` `[b, h, s, d]` at positions `offset..offset + s` over
    /// keys and values `[b, kvh, offset + s, d]`; returns `[b, s, h · d]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (b, _, s, _) = q.dims4()?;
        let rep = self.num_heads / self.num_kv_heads;
        let (kvh, d) = (self.num_kv_heads, self.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        // Training on the CPU: the fused causal attention with its own backward pass (no
        // `n × n` matrix kept for the backward pass, a few passes over the keys per row).
        let differentiable = q.track_op() || k.track_op() || v.track_op();
        if differentiable && offset == 0 && q.device().is_cpu() && q.dtype() == DType::F32 && k.dim(2)? == s {
            let op = crate::attention::CausalAttention::new(scale as f32, self.sliding_window);
            let out = q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?;
            return out.transpose(1, 2)?.reshape((b, s, self.num_heads * d));
        }
        // One new token in f32 without gradients, on the CPU: the fused decoding kernel (over
        // an f32 or f16 cache).
        let fused = q.device().is_cpu() && !q.track_op() && !k.track_op();
        if s == 1
            && q.dtype() == DType::F32
            && fused
            && k.dtype() == v.dtype()
            && matches!(k.dtype(), DType::F32 | DType::F16)
        {
            let lo = self.sliding_window.map_or(0, |w| (offset + 1).saturating_sub(w));
            let n = k.dim(2)? - lo;
            let qg = q.reshape((b, kvh, rep, d))?;
            let out = qg.apply_op3_no_bwd(
                &k.narrow(2, lo, n)?,
                &v.narrow(2, lo, n)?,
                &crate::attention::DecodeAttention { scale: scale as f32 },
            )?;
            return out.reshape((b, 1, self.num_heads * d));
        }
        // A cache kept in another dtype than the queries' (an f16 cache of an f32 model): the
        // products run in the queries' dtype.
        let (k, v) = if k.dtype() == q.dtype() {
            (k.clone(), v.clone())
        } else {
            (k.to_dtype(q.dtype())?, v.to_dtype(q.dtype())?)
        };
        // Queries per chunk: at most `self.chunk`, fewer over long caches so that one chunk's
        // scores stay within SCORES_BYTES (buffers the allocator reuses instead of mapping
        // fresh pages for every chunk of every layer).
        let keys = k.dim(2)?;
        let chunk = self.chunk.min((SCORES_BYTES / (4 * self.num_heads * keys)).max(16));
        let mut outputs = Vec::with_capacity(s.div_ceil(chunk));
        for start in (0..s).step_by(chunk) {
            let len = chunk.min(s - start);
            // The query heads sharing one key/value head, as rows of one matrix:
            // `[b, kvh, rep · len, d]` (no copy of the keys and values per query head).
            let qc = q.narrow(2, start, len)?.reshape((b, kvh, rep * len, d))?;
            // Only keys some query of the chunk can see: up to its last position, and within
            // the sliding window of its first one. The others would be masked to zero anyway.
            let first = offset + start;
            let hi = first + len;
            let lo = self.sliding_window.map_or(0, |w| (first + 1).saturating_sub(w));
            let kc = k.narrow(2, lo, hi - lo)?;
            let vc = v.narrow(2, lo, hi - lo)?;
            // Scores in the model's dtype; mask and softmax in f32, as transformers' eager
            // attention does (`softmax(..., dtype=torch.float32).to(query.dtype)`).
            let scores = (qc.matmul(&kc.t()?)? * scale)?.to_dtype(DType::F32)?;
            let p = if !fused || scores.track_op() {
                self.differentiable_softmax(scores, (b, kvh, rep), first, len, lo, hi, q.device())?
            } else {
                // Inference on the CPU: one fused pass, the causal/window mask implied by
                // positions (the kernels of `attention.rs` have no GPU version).
                scores.apply_op1_no_bwd(&crate::attention::CausalSoftmax {
                    first,
                    len,
                    lo,
                    window: self.sliding_window,
                })?
            };
            let p = p.to_dtype(vc.dtype())?;
            outputs.push(p.matmul(&vc)?.reshape((b, self.num_heads, len, d))?);
        }
        let out = if outputs.len() == 1 { outputs.pop().expect("one chunk") } else { Tensor::cat(&outputs, 2)? };
        out.transpose(1, 2)?.reshape((b, s, self.num_heads * d))
    }

    /// Masked softmax written out in tensor operations (max-subtracted), so that it has a
    /// backward pass.
    #[allow(clippy::too_many_arguments)]
    fn differentiable_softmax(
        &self,
        mut scores: Tensor,
        (b, kvh, rep): (usize, usize, usize),
        first: usize,
        len: usize,
        lo: usize,
        hi: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        // A single query sees every key of its range (that is how the range was chosen).
        if len > 1 {
            let mask = self.mask(first, len, lo, hi, device)?;
            scores = scores.reshape((b, kvh, rep, len, hi - lo))?.broadcast_add(&mask)?.reshape((
                b,
                kvh,
                rep * len,
                hi - lo,
            ))?;
        }
        let max = scores.max_keepdim(D::Minus1)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    /// Additive mask `[len, hi - lo]` for queries at positions `first..first + len` over keys
    /// `lo..hi`.
    fn mask(&self, first: usize, len: usize, lo: usize, hi: usize, device: &Device) -> candle_core::Result<Tensor> {
        let n = hi - lo;
        let mut m = vec![0f32; len * n];
        for i in 0..len {
            let qp = first + i;
            for (j, slot) in m[i * n..(i + 1) * n].iter_mut().enumerate() {
                let kp = lo + j;
                let visible = kp <= qp && self.sliding_window.is_none_or(|w| kp + w > qp);
                if !visible {
                    *slot = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_vec(m, (len, n), device)
    }
}

struct Mlp {
    gate: Adapted,
    up: Adapted,
    down: Adapted,
    layer: usize,
}

impl Mlp {
    fn new(cfg: &Config, i: usize, src: &dyn WeightSource) -> candle_core::Result<Self> {
        Ok(Self {
            gate: Adapted::new(src.proj(i, Part::Gate, cfg.hidden_size, cfg.intermediate_size, false)?),
            up: Adapted::new(src.proj(i, Part::Up, cfg.hidden_size, cfg.intermediate_size, false)?),
            down: Adapted::new(src.proj(i, Part::Down, cfg.intermediate_size, cfg.hidden_size, false)?),
            layer: i,
        })
    }

    fn forward(&self, x: &Tensor, dropout: Option<LoraDropout>) -> candle_core::Result<Tensor> {
        let at = |part| dropout.map(|d| (d, self.layer, part));
        let gate = self.gate.forward(x, at(Part::Gate))?;
        let up = self.up.forward(x, at(Part::Up))?;
        let hidden = if crate::fused::applies(&[&gate, &up]) {
            crate::fused::swiglu(&gate, &up)?
        } else {
            // silu(x) = x * sigmoid(x), written out to stay differentiable.
            ((&gate * (gate.neg()?.exp()? + 1.0)?.recip()?)? * up)?
        };
        self.down.forward(&hidden, at(Part::Down))
    }
}

struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

/// The decoder with its LM head and KV cache.
pub struct Llama {
    embed: Embed,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    rotary: RotaryState,
    config: Config,
}

impl Llama {
    /// Builds the model from weights named as in Hugging Face checkpoints (`model.layers.0…`).
    pub fn new(config: Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::from_source(config, &HfWeights(vb))
    }

    /// Builds the model from any weight source.
    pub fn from_source(config: Config, src: &dyn WeightSource) -> candle_core::Result<Self> {
        let (hidden, eps) = (config.hidden_size, config.rms_norm_eps);
        let embed = src.embedding(config.vocab_size, hidden)?;
        let layers = (0..config.num_layers)
            .map(|i| {
                Ok(Layer {
                    input_norm: RmsNorm { weight: src.norm(i, Part::InputNorm, hidden)?, eps },
                    attn: Attention::new(&config, i, src)?,
                    post_norm: RmsNorm { weight: src.norm(i, Part::PostNorm, hidden)?, eps },
                    mlp: Mlp::new(&config, i, src)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let norm = RmsNorm { weight: src.final_norm(hidden)?, eps };
        let lm_head = src.lm_head(hidden, config.vocab_size, config.tie_word_embeddings, &embed)?;
        Ok(Self { embed, layers, norm, lm_head, rotary: RotaryState::new(config.rope), config })
    }

    /// A fresh sequence (empty cache in the model's KV cache dtype, fresh rotary state) with
    /// room reserved for `tokens` tokens.
    pub fn new_sequence(&self, tokens: usize) -> Sequence {
        let caches = self
            .layers
            .iter()
            .map(|l| KvCache { buffers: None, len: 0, reserved: tokens, dtype: l.attn.cache.dtype })
            .collect();
        Sequence { caches, rotary: RotaryState::new(self.config.rope) }
    }

    /// A new sequence holding a copy of the first `len` cached tokens of `seq` (their keys and
    /// values as computed there), a fresh rotary state, and room for `tokens` tokens. Prefill
    /// the rest of a prompt that starts with those tokens from position `len`. Only exact where
    /// the rotary state does not depend on the length (every scaling but dynamic NTK past the
    /// original window).
    pub fn fork_sequence(&self, seq: &Sequence, len: usize, tokens: usize) -> candle_core::Result<Sequence> {
        if len > seq.len() {
            candle_core::bail!("cannot fork {len} tokens of a sequence of {}", seq.len());
        }
        let mut out = self.new_sequence(tokens.max(len));
        for (dst, src) in out.caches.iter_mut().zip(&seq.caches) {
            if let (Some((k, v)), true) = (&src.buffers, len > 0) {
                dst.append(&k.narrow(2, 0, len)?, &v.narrow(2, 0, len)?)?;
            }
        }
        Ok(out)
    }

    /// Runs `f` with `seq`'s cache and rotary state in place of the model's own (e.g. to
    /// prefill its prompt with [`CausalLm::forward_last`]); the model's own come back after.
    pub fn with_sequence<R>(&mut self, seq: &mut Sequence, f: impl FnOnce(&mut Self) -> R) -> R {
        self.swap_sequence(seq);
        let out = f(self);
        self.swap_sequence(seq);
        out
    }

    fn swap_sequence(&mut self, seq: &mut Sequence) {
        for (layer, cache) in self.layers.iter_mut().zip(&mut seq.caches) {
            std::mem::swap(&mut layer.attn.cache, cache);
        }
        std::mem::swap(&mut self.rotary, &mut seq.rotary);
    }

    /// One decoding step for several sequences in one forward pass: `tokens[i]` is appended
    /// to `seqs[i]` at its next position. The projections, norms and MLPs run on all the rows
    /// at once (the weights are read once per step); attention runs per sequence over its own
    /// cache. Returns the logits `[n, vocab]`, row `i` equal to what decoding `seqs[i]` alone
    /// gives. Every sequence must hold at least one token (its prefilled prompt).
    pub fn decode_batch(&mut self, seqs: &mut [&mut Sequence], tokens: &[u32]) -> candle_core::Result<Tensor> {
        if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
            candle_core::bail!("decode_batch: sequence {i} has no prompt in its cache");
        }
        let rows: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
        self.forward_batch(seqs, &rows)
    }

    /// One forward pass over several sequences with any number of new tokens each: `tokens[i]`
    /// (at least one) is appended to `seqs[i]` from its next position, so prompt chunks and
    /// single decode tokens run together. The projections, norms and MLPs run on all the rows
    /// at once; attention runs per sequence over its own cache (causal within its new tokens),
    /// as a prefill chunk of those tokens would; the LM head runs on each sequence's last row
    /// only. Returns the logits `[n, vocab]` of each sequence's last new token.
    pub fn forward_batch(&mut self, seqs: &mut [&mut Sequence], tokens: &[&[u32]]) -> candle_core::Result<Tensor> {
        let n = seqs.len();
        if n != tokens.len() || n == 0 {
            candle_core::bail!("forward_batch: {n} sequences and {} token lists", tokens.len());
        }
        if let Some(i) = tokens.iter().position(|t| t.is_empty()) {
            candle_core::bail!("forward_batch: sequence {i} has no new token");
        }
        let device = self.norm.weight.device().clone();
        let starts: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for ((seq, &p), t) in seqs.iter_mut().zip(&starts).zip(tokens) {
            seq.rotary.update(p + t.len() - 1);
            for pos in p..p + t.len() {
                let (c, si) = seq.rotary.cos_sin(pos);
                cos.extend(c);
                sin.extend(si);
            }
        }
        let d = self.config.head_dim;
        // All the new tokens as the rows of one `[1, rows]` input.
        let all: Vec<u32> = tokens.iter().flat_map(|t| t.iter().copied()).collect();
        let rows = all.len();
        let ids = Tensor::new(all, &device)?.unsqueeze(0)?;
        let mut h = self.embed.forward(&ids)?;
        let cos = Tensor::from_vec(cos, (rows, d), &device)?.to_dtype(h.dtype())?;
        let sin = Tensor::from_vec(sin, (rows, d), &device)?.to_dtype(h.dtype())?;
        for (li, layer) in self.layers.iter_mut().enumerate() {
            let attn = &layer.attn;
            let (q, k, v) = attn.project(&layer.input_norm.forward(&h)?, &cos, &sin, None)?;
            let mut outs = Vec::with_capacity(n);
            let mut at = 0;
            for (i, seq) in seqs.iter_mut().enumerate() {
                let t = tokens[i].len();
                let (kc, vc) = seq.caches[li].push(k.narrow(2, at, t)?, v.narrow(2, at, t)?)?;
                outs.push(attn.attend(&q.narrow(2, at, t)?.contiguous()?, &kc, &vc, starts[i])?);
                at += t;
            }
            let a = attn.o.forward(&Tensor::cat(&outs, 1)?, None)?;
            h = (h + a)?;
            let m = layer.mlp.forward(&layer.post_norm.forward(&h)?, None)?;
            h = (h + m)?;
        }
        let last: Vec<u32> = tokens
            .iter()
            .scan(0u32, |end, t| {
                *end += t.len() as u32;
                Some(*end - 1)
            })
            .collect();
        let h = h.squeeze(0)?.index_select(&Tensor::new(last, &device)?, 0)?.unsqueeze(0)?;
        self.lm_head.forward(&self.norm.forward(&h)?)?.squeeze(0)
    }

    /// The dtype the KV cache holds keys and values in: the one set with
    /// [`Llama::set_kv_cache_dtype`], else the model's activation dtype.
    pub fn kv_cache_dtype(&self) -> DType {
        self.layers.first().and_then(|l| l.attn.cache.dtype).unwrap_or(self.norm.weight.dtype())
    }

    /// Stores the KV cache in `dtype` (`None`: the model's dtype); clears the cache. An f16
    /// cache of an f32 model halves its memory; attention reads it back in f32.
    pub fn set_kv_cache_dtype(&mut self, dtype: Option<DType>) {
        for layer in &mut self.layers {
            layer.attn.cache.dtype = dtype;
            layer.attn.cache.buffers = None;
            layer.attn.cache.len = 0;
        }
    }

    /// Quantizes every projection and the LM head to llama.cpp's block formats (byte for byte
    /// as its reference quantizer: [`crate::quantize`]; they then run on the Q4/Q8 kernels as a
    /// GGUF file's would), or every projection to NF4 (bitsandbytes' codes: [`crate::nf4`];
    /// the LM head stays f32). The embedding, norms and biases stay f32; LoRA updates
    /// stay as they are (LoRA over a quantized base: QLoRA). Projections that are quantized
    /// already are left alone. The model must be in f32.
    pub fn quantize_weights(&mut self, format: impl Into<WeightFormat>) -> candle_core::Result<()> {
        let format = format.into();
        if self.norm.weight.dtype() != DType::F32 {
            candle_core::bail!("quantizing at load needs the model in f32, not {:?}", self.norm.weight.dtype());
        }
        for i in 0..self.layers.len() {
            for part in Part::PROJECTIONS {
                let adapted = self.adapted_mut(i, part).expect("a projection");
                let name = format!("model.layers.{i}.{}.weight", part.hf_path());
                quantize_proj(&mut adapted.base, format, &name)?;
            }
        }
        if let WeightFormat::Blocks(_) = format {
            quantize_proj(&mut self.lm_head, format, "lm_head.weight")?;
        }
        Ok(())
    }

    /// How the quantized projections and LM head compute: llama.cpp's 8-bit products
    /// (inference, the default) or f32 products over the dequantized weights (training a LoRA
    /// over a quantized base: every product then has the same values as over dense
    /// dequantized weights, and passes gradients back). With `Dequantized`, matrices of the
    /// types candle runs (K-quants, F16 in a GGUF file), whose products pass no gradient, are
    /// dequantized into dense f32 ones.
    pub fn set_quantized_products(&mut self, products: crate::qmatmul::Products) -> candle_core::Result<()> {
        let dequantized = products == crate::qmatmul::Products::Dequantized;
        let set = |p: &mut Proj| -> candle_core::Result<()> {
            match p {
                Proj::Packed(m, _) => m.1 = products,
                Proj::Quant(QMatMul::QTensor(t), b) if dequantized => {
                    let w = t.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
                    *p = Proj::Dense(Linear::new(w, b.clone()));
                }
                _ => {}
            }
            Ok(())
        };
        for i in 0..self.layers.len() {
            for part in Part::PROJECTIONS {
                set(&mut self.adapted_mut(i, part).expect("a projection").base)?;
            }
        }
        set(&mut self.lm_head)
    }

    /// Sets how many queries attend at once (memory `O(chunk × n)` per head); results do not
    /// depend on it beyond float rounding.
    pub fn set_attention_chunk(&mut self, chunk: usize) {
        for layer in &mut self.layers {
            layer.attn.chunk = chunk.max(1);
        }
    }

    /// Hidden states after the last decoder layer (before the final norm), `[batch, seq, hidden]`.
    fn hidden(&mut self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (_, s) = ids.dims2()?;
        let device = ids.device().clone();
        self.rotary.update(offset + s - 1);
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in offset..offset + s {
            let (c, si) = self.rotary.cos_sin(p);
            cos.extend(c);
            sin.extend(si);
        }
        let d = self.config.head_dim;
        let mut h = self.embed.forward(ids)?;
        let cos = Tensor::from_vec(cos, (s, d), &device)?.to_dtype(h.dtype())?;
        let sin = Tensor::from_vec(sin, (s, d), &device)?.to_dtype(h.dtype())?;
        for layer in &mut self.layers {
            let a = layer.attn.forward(&layer.input_norm.forward(&h)?, &cos, &sin, offset)?;
            h = (h + a)?;
            let m = layer.mlp.forward(&layer.post_norm.forward(&h)?, None)?;
            h = (h + m)?;
        }
        Ok(h)
    }

    /// The projection `part` of layer `layer` (a norm is not a projection).
    fn adapted_mut(&mut self, layer: usize, part: Part) -> Option<&mut Adapted> {
        let l = self.layers.get_mut(layer)?;
        Some(match part {
            Part::Q => &mut l.attn.q,
            Part::K => &mut l.attn.k,
            Part::V => &mut l.attn.v,
            Part::O => &mut l.attn.o,
            Part::Gate => &mut l.mlp.gate,
            Part::Up => &mut l.mlp.up,
            Part::Down => &mut l.mlp.down,
            Part::InputNorm | Part::PostNorm => return None,
        })
    }

    /// Sets (or with `None` removes) the LoRA update of projection `part` of layer `layer`.
    /// `A` must be `[r, in]` and `B` `[out, r]` for the projection's features.
    pub fn set_lora(&mut self, layer: usize, part: Part, lora: Option<Lora>) -> candle_core::Result<()> {
        let features = part.features(&self.config);
        let n = self.layers.len();
        let Some(adapted) = self.adapted_mut(layer, part) else {
            candle_core::bail!("no projection {part:?} in layer {layer} (the model has {n} layers)");
        };
        if let (Some(l), Some((fin, fout))) = (&lora, features) {
            let (r, a_in) = l.a.dims2()?;
            let (b_out, b_r) = l.b.dims2()?;
            if a_in != fin || b_out != fout || b_r != r {
                candle_core::bail!(
                    "LoRA of layer {layer} {}: A is {:?} and B {:?}, the model needs [r, {fin}] and [{fout}, r]",
                    part.module_name(),
                    l.a.dims(),
                    l.b.dims()
                );
            }
        }
        adapted.lora = lora;
        Ok(())
    }

    /// The projections that carry a LoRA update, with it.
    pub fn loras(&self) -> Vec<(usize, Part, &Lora)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let parts = [
                (Part::Q, &l.attn.q),
                (Part::K, &l.attn.k),
                (Part::V, &l.attn.v),
                (Part::O, &l.attn.o),
                (Part::Gate, &l.mlp.gate),
                (Part::Up, &l.mlp.up),
                (Part::Down, &l.mlp.down),
            ];
            for (part, a) in parts {
                if let Some(lora) = &a.lora {
                    out.push((i, part, lora));
                }
            }
        }
        out
    }

    /// cos and sin `[Σ lens, head_dim]` for sequences of lengths `lens` packed one after
    /// another, each at positions `0..len` and with the frequencies a fresh model gives a
    /// sequence of its length (dynamic NTK: `seq_len = len`), in `dtype`.
    pub fn packed_rope(&self, lens: &[usize], dtype: DType, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let total: usize = lens.iter().sum();
        let d = self.config.head_dim;
        let (mut cos, mut sin) = (Vec::with_capacity(total * d), Vec::with_capacity(total * d));
        for &len in lens {
            let mut rotary = RotaryState::new(self.config.rope);
            rotary.update(len.saturating_sub(1));
            for p in 0..len {
                let (c, s) = rotary.cos_sin(p);
                cos.extend(c);
                sin.extend(s);
            }
        }
        let cos = Tensor::from_vec(cos, (total, d), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (total, d), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// The token embeddings of `ids` `[1, n]`: the input of layer 0.
    pub fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.embed.forward(ids)
    }

    /// Decoder layer `i` on packed sequences (see [`Llama::packed_rope`]): `h` `[1, Σ lens,
    /// hidden]` in, the same shape out. No KV cache; differentiable.
    pub fn layer_packed(
        &self,
        i: usize,
        h: &Tensor,
        rope: &(Tensor, Tensor),
        lens: &[usize],
        dropout: Option<LoraDropout>,
    ) -> candle_core::Result<Tensor> {
        let layer = &self.layers[i];
        let a = layer.attn.forward_packed(&layer.input_norm.forward(h)?, &rope.0, &rope.1, lens, dropout)?;
        let h = (h + a)?;
        let m = layer.mlp.forward(&layer.post_norm.forward(&h)?, dropout)?;
        h + m
    }

    /// Logits of hidden states after the last layer: the final norm and the LM head.
    pub fn head(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head.forward(&self.norm.forward(h)?)
    }

    /// Tokens in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.layers.first().map_or(0, |l| l.attn.cache.len)
    }
}

impl CausalLm for Llama {
    fn forward(&mut self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let h = self.hidden(ids, offset)?;
        self.lm_head.forward(&self.norm.forward(&h)?)
    }

    fn forward_last(&mut self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let h = self.hidden(ids, offset)?;
        let n = h.dim(1)?;
        let last = h.narrow(1, n - 1, 1)?;
        self.lm_head.forward(&self.norm.forward(&last)?)?.squeeze(1)
    }

    fn reset(&mut self) {
        self.clear_cache();
        self.rotary = RotaryState::new(self.config.rope);
    }

    fn clear_cache(&mut self) {
        for layer in &mut self.layers {
            layer.attn.cache.clear();
        }
    }

    fn reserve(&mut self, tokens: usize) {
        for layer in &mut self.layers {
            layer.attn.cache.reserved = tokens;
        }
    }

    fn config(&self) -> &Config {
        &self.config
    }
}
