//! The memory planner (`longctx plan train`): the peak memory of a fine-tuning run, per
//! device, before it runs — for longctx's own CPU trainer (f32, measured against its peak RSS)
//! and for PyTorch trainers on GPUs (torchtune, TRL, axolotl: bf16 weights, checked against
//! their published peaks; see the README's planner section for both tables and the sources).
//!
//! The estimate counts what each trainer keeps, tensor by tensor:
//!
//! - **weights**: the base (its dtype, or quantized blocks for the linear layers: Q8_0 34,
//!   Q4_0 18, Q4_1 20 bytes per 32 values; NF4 with double quantization 0.5159 bytes per value,
//!   embedding and LM head unquantized) and the LoRA matrices;
//! - **gradients** and **optimizer states** (AdamW: two moments in the parameters' dtype;
//!   8-bit AdamW: one byte each), sharded by ZeRO stage or left on the host by offloading;
//! - **activations**: what the backward pass needs of each layer, per token (the tensors
//!   counted are listed in [`layer_activation_bytes`]), all layers or only their inputs with
//!   checkpointing;
//! - **attention workspace**: eager attention's `seq × seq` scores (flash attention has none);
//! - **logits**: `tokens × vocab` in the compute dtype plus the f32 copies the loss makes —
//!   the whole upcast (`full`), or one chunk at a time (`chunked`);
//! - **temporary buffers**: the gradients in flight while a layer runs backward;
//! - **runtime**: the process or CUDA context, outside the allocator's peak.
//!
//! The peak is the largest of three moments: the loss (all kept activations and the logits),
//! the backward pass (kept activations, one recomputed layer, the gradients made so far) and,
//! for the longctx trainer, its AdamW step (every gradient and the step's temporaries).

use serde::Serialize;

use crate::{Error, Result};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// The shape of a decoder: what its memory depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Vocabulary.
    pub vocab: usize,
    /// Model width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// The LM head is the embedding matrix.
    pub tied: bool,
}

/// The seven projections of a layer, with PEFT's module names.
const MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl Shape {
    /// The shape of a runtime configuration.
    pub fn of(config: &longctx_models::llama::Config) -> Self {
        Self {
            vocab: config.vocab_size,
            hidden: config.hidden_size,
            intermediate: config.intermediate_size,
            layers: config.num_layers,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            tied: config.tie_word_embeddings,
        }
    }

    /// `(in, out)` of a projection (one of [`MODULES`]).
    fn module_dims(&self, module: &str) -> (usize, usize) {
        let (h, q, kv, i) = (self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate);
        match module {
            "q_proj" => (h, q),
            "k_proj" | "v_proj" => (h, kv),
            "o_proj" => (q, h),
            "gate_proj" | "up_proj" => (h, i),
            _ => (i, h),
        }
    }

    /// Hidden, query, key/value and MLP widths.
    fn widths(&self) -> (f64, f64, f64, f64) {
        (
            self.hidden as f64,
            (self.heads * self.head_dim) as f64,
            (self.kv_heads * self.head_dim) as f64,
            self.intermediate as f64,
        )
    }

    /// Parameters of the projections of all layers (what quantization applies to).
    pub fn linear_params(&self) -> f64 {
        MODULES.iter().map(|m| self.module_dims(m)).map(|(a, b)| (a * b) as f64).sum::<f64>() * self.layers as f64
    }

    /// Parameters of the embedding and (untied) LM head.
    pub fn embedding_params(&self) -> f64 {
        let e = (self.vocab * self.hidden) as f64;
        if self.tied {
            e
        } else {
            2.0 * e
        }
    }

    /// Every parameter (projections, embedding and head, norms).
    pub fn params(&self) -> f64 {
        self.linear_params() + self.embedding_params() + ((2 * self.layers + 1) * self.hidden) as f64
    }

    /// Parameters of one layer.
    fn layer_params(&self) -> f64 {
        self.linear_params() / self.layers as f64 + (2 * self.hidden) as f64
    }
}

/// The shape of `model`: a `config.json`, a model directory, a GGUF file or a hub id (only
/// its `config.json` is fetched). Architectures the runtime does not know are refused.
pub fn model_shape(model: &str) -> Result<Shape> {
    use longctx_models::llama::LlamaHfConfig;
    let path = std::path::Path::new(model);
    let from_json = |file: &std::path::Path| -> Result<Shape> {
        let text = fs_err::read_to_string(file)?;
        let config: LlamaHfConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a decoder config.json: {e}", file.display())))?;
        let config = config.into_config(None).map_err(|e| {
            Error::Config(format!(
                "{}: {e} — the planner knows the architectures longctx runs (model_type llama, mistral, qwen2)",
                file.display()
            ))
        })?;
        Ok(Shape::of(&config))
    };
    if path.is_file() && longctx_models::load::is_gguf(path) {
        let file = longctx_models::gguf::GgufFile::open(path)?;
        return Ok(Shape::of(&file.config(None)?));
    }
    if path.is_file() {
        return from_json(path);
    }
    if path.is_dir() {
        let config = path.join("config.json");
        if config.is_file() {
            return from_json(&config);
        }
        return Err(Error::Config(format!("{}: a directory without config.json", path.display())));
    }
    from_json(&longctx_models::load::hub_config(model)?)
}

/// PEFT's names of the seven projections (LoRA on all linear layers).
pub fn all_modules() -> Vec<String> {
    MODULES.iter().map(ToString::to_string).collect()
}

/// Worker threads of the longctx trainer (its attention scratch is per thread).
pub fn default_threads() -> usize {
    rayon::current_num_threads()
}

/// This machine's available memory (`MemAvailable` of `/proc/meminfo`), bytes.
pub fn available_memory() -> Result<f64> {
    let text = fs_err::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .ok_or_else(|| Error::Config("/proc/meminfo has no MemAvailable".into()))
}

/// Which trainer the plan is for: PyTorch trainers on GPUs differ in what they keep in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainer {
    /// transformers + PEFT (TRL, axolotl): LoRA weights in f32 (PEFT's
    /// `autocast_adapter_dtype`), and under a quantized base the unquantized weights
    /// (embedding, LM head, norms) in f32 (`prepare_model_for_kbit_training`).
    Hf,
    /// torchtune: everything in the training dtype, LoRA weights included.
    Torchtune,
    /// `longctx train` on this machine's CPU (f32).
    Longctx,
}

/// LoRA or full fine-tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Method {
    /// LoRA of rank `r` on `targets` (PEFT module names).
    Lora {
        /// Rank.
        r: usize,
        /// Adapted projections.
        targets: Vec<String>,
        /// Dropout on the adapters' input.
        dropout: bool,
    },
    /// Every weight trained.
    Full,
}

/// Gradient checkpointing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpointing {
    /// Every layer's activations kept for the backward pass.
    None,
    /// Only each layer's input kept; the layer recomputed in the backward pass.
    Layer,
}

/// Weights and compute dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// bfloat16 (2 bytes).
    Bf16,
    /// float32 (4 bytes).
    F32,
}

impl Dtype {
    fn bytes(self) -> f64 {
        match self {
            Dtype::Bf16 => 2.0,
            Dtype::F32 => 4.0,
        }
    }
}

/// The optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// AdamW, two moments in the parameters' dtype.
    Adamw,
    /// 8-bit AdamW (bitsandbytes / torchao): one byte per moment.
    Adamw8bit,
}

/// What leaves the GPU for host memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offload {
    /// Nothing.
    None,
    /// Optimizer states and the optimizer step (ZeRO-Offload, paged optimizers): gradients
    /// leave the device as they are made.
    Optimizer,
    /// Parameters too (ZeRO-3 / FSDP CPU offload): only the layer being computed is on the
    /// device.
    Params,
    /// The checkpointed layer inputs (torchtune's activation offloading).
    Activations,
}

/// The attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Scores materialized (`seq × seq` per head), key/value heads repeated for GQA.
    Eager,
    /// FlashAttention / SDPA memory-efficient kernels: no scores kept.
    Flash,
}

/// How the loss treats the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Logits {
    /// The whole `tokens × vocab` upcast to f32 (transformers' default loss).
    Full,
    /// Upcast and loss one chunk at a time (torchtune's chunked cross-entropy, 8 chunks).
    Chunked,
}

/// The frozen base's storage under LoRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseQuant {
    /// The weights' dtype.
    None,
    /// bitsandbytes NF4 with double quantization (QLoRA).
    Nf4,
    /// llama.cpp Q4_0.
    Q4_0,
    /// llama.cpp Q4_1.
    Q4_1,
    /// llama.cpp Q8_0.
    Q8_0,
}

impl BaseQuant {
    /// Bytes per value of a quantized matrix (`None`: not quantized).
    fn bytes(self) -> Option<f64> {
        match self {
            BaseQuant::None => None,
            // 4 bits, an 8-bit absmax per 64 values and an f32 scale per 256 absmax.
            BaseQuant::Nf4 => Some(0.5 + 1.0 / 64.0 + 4.0 / (64.0 * 256.0)),
            BaseQuant::Q4_0 => Some(18.0 / 32.0),
            BaseQuant::Q4_1 => Some(20.0 / 32.0),
            BaseQuant::Q8_0 => Some(34.0 / 32.0),
        }
    }
}

/// `FromStr` and `name()` for the choices of a flag, by their command-line names.
macro_rules! choices {
    ($t:ident, $flag:literal, { $($v:ident => $name:literal),+ $(,)? }) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok(Self::$v),)+
                    other => Err(format!(concat!("unknown ", $flag, " `{}` (one of: {})"), other, [$($name),+].join(", "))),
                }
            }
        }

        impl $t {
            /// The command-line name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$v => $name,)+
                }
            }
        }
    };
}

choices!(Trainer, "--trainer", { Hf => "hf", Torchtune => "torchtune", Longctx => "longctx" });
choices!(Checkpointing, "--checkpointing", { None => "none", Layer => "layer" });
choices!(Dtype, "--dtype", { Bf16 => "bf16", F32 => "f32" });
choices!(Optimizer, "--optimizer", { Adamw => "adamw", Adamw8bit => "adamw-8bit" });
choices!(Offload, "--offload", { None => "none", Optimizer => "optimizer", Params => "params", Activations => "activations" });
choices!(Attention, "--attention", { Eager => "eager", Flash => "flash" });
choices!(Logits, "--logits", { Full => "full", Chunked => "chunked" });
choices!(BaseQuant, "--base-quant", { None => "none", Nf4 => "nf4", Q4_0 => "q4_0", Q4_1 => "q4_1", Q8_0 => "q8_0" });

/// Everything a plan depends on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// The trainer.
    pub trainer: Trainer,
    /// The model.
    pub shape: Shape,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per forward pass, over all devices.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// LoRA or full.
    pub method: Method,
    /// Gradient checkpointing.
    pub checkpointing: Checkpointing,
    /// Weights and compute dtype.
    pub dtype: Dtype,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Devices.
    pub gpus: usize,
    /// DeepSpeed ZeRO stage (or the FSDP equivalent: 3 = full sharding).
    pub zero: u8,
    /// What is offloaded.
    pub offload: Vec<Offload>,
    /// Attention kernel.
    pub attention: Attention,
    /// Loss over the logits.
    pub logits: Logits,
    /// The frozen base's storage.
    pub base_quant: BaseQuant,
    /// Memory of one device, bytes.
    pub budget: f64,
    /// Process baseline of the longctx trainer (bytes), measured: see [`LONGCTX_RUNTIME`].
    pub runtime: f64,
    /// Worker threads of the longctx trainer (attention scratch per thread).
    pub threads: usize,
}

/// glibc's mmap threshold while training (bytes): larger buffers are mapped and unmapped, so
/// the peak RSS is what is alive (see `trainer`).
pub const MMAP_THRESHOLD: i32 = 4 << 20;

/// The plan of a `longctx train` file on this machine (its available memory, its worker
/// threads), for the longest micro-batch it can make; `None` where the planner does not apply
/// (weights kept in bf16, or no `/proc/meminfo` to read the available memory from).
pub fn training_spec(config: &crate::config::TrainConfig) -> Result<Option<Spec>> {
    use crate::batch::Batching;
    if config.model.dtype.as_deref().is_some_and(|d| d != "f32") {
        return Ok(None);
    }
    // No /proc/meminfo (not Linux): nothing to check against.
    let Ok(budget) = available_memory() else { return Ok(None) };
    let shape = model_shape(&config.model.path)?;
    let method = match config.lora() {
        Some(l) => Method::Lora { r: l.r, targets: l.target_modules.clone(), dropout: l.dropout > 0.0 },
        None => Method::Full,
    };
    let base_quant = match config.lora().and_then(|l| l.base_quant).as_deref() {
        None => BaseQuant::None,
        Some("gguf") => gguf_base_quant(std::path::Path::new(&config.model.path)),
        Some(other) => other.parse().map_err(Error::Config)?,
    };
    let seq_len = match config.data.batching {
        Batching::Naive => config.data.max_seq_len,
        Batching::Sorted | Batching::Packed => config.micro_batch_tokens(),
    };
    Ok(Some(Spec {
        grad_accum: config.optim.grad_accum,
        method,
        checkpointing: if config.optim.gradient_checkpointing { Checkpointing::Layer } else { Checkpointing::None },
        base_quant,
        budget,
        ..Spec::new(Trainer::Longctx, shape, seq_len)
    }))
}

/// The block format a GGUF file's projections keep under `base_quant = "gguf"` (other types
/// are dequantized to f32).
fn gguf_base_quant(path: &std::path::Path) -> BaseQuant {
    use candle_core::quantized::GgmlDType;
    let file = longctx_models::gguf::GgufFile::open(path).ok();
    match file.and_then(|f| f.tensor_type("blk.0.ffn_down.weight")) {
        Some(GgmlDType::Q4_0) => BaseQuant::Q4_0,
        Some(GgmlDType::Q4_1) => BaseQuant::Q4_1,
        Some(GgmlDType::Q8_0) => BaseQuant::Q8_0,
        _ => BaseQuant::None,
    }
}

/// The longctx trainer's resident memory besides what the plan counts: the binary, its
/// allocator and thread pool, tokenizer and data, once the model is loaded. Measured on this
/// machine (the tiny model's runs at 8,192 tokens less what the plan counts for them).
pub const LONGCTX_RUNTIME: f64 = 30.0 * MIB;

/// The longctx trainer's peak RSS while loading (files parsed, then freed): the floor of its
/// peak. Measured on this machine (the tiny model, 64 tokens).
pub const LONGCTX_LOAD_PEAK: f64 = 54.0 * MIB;

/// CUDA context, cuBLAS/cuDNN workspaces and the caching allocator's slack, outside
/// PyTorch's reported peak.
pub const CUDA_RUNTIME: f64 = GIB;

/// LM-head rows per chunk in the longctx trainer (`step::StepOptions::head_chunk`).
const LONGCTX_HEAD_CHUNK: usize = 1024;

/// Query rows per block of the longctx fused attention (`attention::BLOCK`).
const LONGCTX_ATTENTION_BLOCK: usize = 64;

/// Chunks of torchtune's chunked cross-entropy.
const LOSS_CHUNKS: f64 = 8.0;

/// One part of the peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Part {
    /// What it is.
    pub name: &'static str,
    /// Bytes on one device at the peak.
    pub bytes: f64,
    /// How it was counted.
    pub detail: String,
}

/// A change that lowers the peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The flags that make it.
    pub change: String,
    /// The peak per device with it, bytes.
    pub peak_bytes: f64,
    /// Whether the run then fits.
    pub fits: bool,
    /// The longest sequence that then fits.
    pub max_seq_len: usize,
}

/// The plan: the peak per device, what makes it, and what would make it fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// What was planned.
    pub spec: Spec,
    /// Parameters of the model.
    pub params: f64,
    /// Trained parameters.
    pub trainable_params: f64,
    /// The parts of the peak (they sum to `peak_bytes`).
    pub parts: Vec<Part>,
    /// Activations kept per layer (bytes, one device), without checkpointing.
    pub activations_per_layer_bytes: f64,
    /// Which moment the peak is at: `loss`, `backward` or `optimizer step`.
    pub peak_at: &'static str,
    /// The peak on one device, bytes (what the device must hold).
    pub peak_bytes: f64,
    /// The device's memory, bytes.
    pub budget_bytes: f64,
    /// Whether it fits.
    pub fits: bool,
    /// Bytes over the budget (0 when it fits).
    pub over_by_bytes: f64,
    /// The longest sequence that fits with these settings (0: none).
    pub max_seq_len: usize,
    /// Changes that lower the peak, the largest effect first.
    pub suggestions: Vec<Suggestion>,
}

impl Spec {
    /// `trainer` fine-tuning `shape` on sequences of `seq_len` tokens, with the defaults of
    /// `longctx plan train`: LoRA r 16 on every projection, one sequence on one device, no
    /// checkpointing, AdamW, flash attention, the trainer's own loss (transformers': the whole
    /// logits in f32; torchtune and longctx: chunked), its dtype (longctx: f32, else bf16),
    /// 80 GiB.
    pub fn new(trainer: Trainer, shape: Shape, seq_len: usize) -> Self {
        let longctx = trainer == Trainer::Longctx;
        Self {
            trainer,
            shape,
            seq_len,
            micro_batch: 1,
            grad_accum: 1,
            method: Method::Lora { r: 16, targets: all_modules(), dropout: false },
            checkpointing: Checkpointing::None,
            dtype: if longctx { Dtype::F32 } else { Dtype::Bf16 },
            optimizer: Optimizer::Adamw,
            gpus: 1,
            zero: 0,
            offload: Vec::new(),
            attention: Attention::Flash,
            logits: if trainer == Trainer::Hf { Logits::Full } else { Logits::Chunked },
            base_quant: BaseQuant::None,
            budget: 80.0 * GIB,
            runtime: LONGCTX_RUNTIME,
            threads: default_threads(),
        }
    }

    /// Checks the combination; the errors say what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.seq_len == 0 || self.micro_batch == 0 || self.gpus == 0 || self.grad_accum == 0 {
            return bad("--seq-len, --micro-batch, --gpus and --grad-accum must be positive".into());
        }
        if !self.micro_batch.is_multiple_of(self.gpus) {
            return bad(format!(
                "--micro-batch {} is not divisible by --gpus {}: each GPU takes micro-batch / gpus sequences (try --micro-batch {})",
                self.micro_batch,
                self.gpus,
                self.gpus * self.micro_batch.div_ceil(self.gpus)
            ));
        }
        if self.zero > 3 {
            return bad(format!("--zero {}: ZeRO stages are 0, 1, 2 and 3", self.zero));
        }
        if self.zero > 0 && self.gpus == 1 {
            return bad(format!(
                "--zero {} with one GPU: ZeRO shards optimizer states, gradients and weights across GPUs, so with --gpus 1 nothing is sharded; use --gpus N (N > 1), or --offload optimizer to move the optimizer to the host",
                self.zero
            ));
        }
        if self.offload.contains(&Offload::Params) && self.zero != 3 {
            return bad("--offload params needs --zero 3 (parameters are offloaded shard by shard)".into());
        }
        if self.offload.contains(&Offload::Activations) && self.checkpointing != Checkpointing::Layer {
            return bad(
                "--offload activations moves the checkpointed layer inputs: it needs --checkpointing layer".into()
            );
        }
        if let Method::Lora { r, targets, .. } = &self.method {
            if *r == 0 {
                return bad("--lora: the rank must be positive".into());
            }
            if let Some(t) = targets.iter().find(|t| !MODULES.contains(&t.as_str())) {
                return bad(format!("LoRA target `{t}` is not one of {}", MODULES.join(", ")));
            }
        } else if self.base_quant != BaseQuant::None {
            return bad("--base-quant quantizes a frozen base: it needs --lora (QLoRA), not --full".into());
        }
        if self.trainer == Trainer::Longctx {
            let not = |what: &str| {
                bad(format!(
                    "{what}: the longctx trainer trains on this machine's CPU in f32 with its fused attention and chunked LM head; plan a GPU run with --trainer hf or torchtune"
                ))
            };
            if self.gpus != 1 || self.zero != 0 || !self.offload.is_empty() {
                return not("--gpus/--zero/--offload");
            }
            if self.dtype != Dtype::F32 {
                return not("--dtype bf16");
            }
            if self.optimizer != Optimizer::Adamw {
                return not("--optimizer adamw-8bit");
            }
            if self.attention != Attention::Flash || self.logits != Logits::Chunked {
                return not("--attention eager / --logits full");
            }
        }
        Ok(())
    }

    /// Trained parameters.
    fn trainable(&self) -> f64 {
        match &self.method {
            Method::Full => self.shape.params(),
            Method::Lora { r, targets, .. } => {
                let per_layer: f64 = targets
                    .iter()
                    .map(|t| {
                        let (i, o) = self.shape.module_dims(t);
                        (r * (i + o)) as f64
                    })
                    .sum();
                per_layer * self.shape.layers as f64
            }
        }
    }

    /// The largest trained tensor (what one optimizer step or one gradient in flight holds).
    fn largest_trainable(&self) -> f64 {
        match &self.method {
            Method::Full => (self.shape.vocab * self.shape.hidden) as f64,
            Method::Lora { r, targets, .. } => targets
                .iter()
                .map(|t| {
                    let (i, o) = self.shape.module_dims(t);
                    (r * i.max(o)) as f64
                })
                .fold(0.0, f64::max),
        }
    }

    fn offloads(&self, what: Offload) -> bool {
        self.offload.contains(&what)
    }

    /// Sequences on one device.
    fn per_device(&self) -> usize {
        self.micro_batch / self.gpus
    }
}

/// Bytes kept per token by one layer for its backward pass (no checkpointing).
///
/// PyTorch (transformers' and torchtune's Llama, `b` bytes per element): each RMSNorm keeps its
/// input in f32 and its output (the next projections' input), plus the normalized input for
/// the weight's gradient when it trains; rotated queries and keys, values; flash attention's
/// output and log-sum-exp (eager: repeated key/value heads, f32 softmax and its cast); the
/// output projection's input; SwiGLU's gate, `silu(gate)`, up and their product; each LoRA
/// `x·Aᵀ`.
///
/// longctx (f32, fused ops): the norms' outputs, each projection's output, its head-major
/// copy and the rotated copy (q, k), attention's output, log-sum-exp and its token-major
/// copy, the output projection, both residual sums, gate, up, SwiGLU and down.
pub fn layer_activation_bytes(spec: &Spec) -> f64 {
    let s = &spec.shape;
    let (h, q, kv, i) = s.widths();
    let heads = s.heads as f64;
    let adapted = match &spec.method {
        Method::Lora { r, targets, dropout } => {
            let inputs: f64 = targets.iter().map(|t| s.module_dims(t).0 as f64).sum();
            (targets.len() * r) as f64 + if *dropout { inputs } else { 0.0 }
        }
        Method::Full => 0.0,
    };
    match spec.trainer {
        Trainer::Longctx => 4.0 * (6.0 * h + 5.0 * q + 5.0 * kv + 3.0 * i + heads + adapted),
        Trainer::Hf | Trainer::Torchtune => {
            let b = spec.dtype.bytes();
            let full = matches!(spec.method, Method::Full);
            let norms = 2.0 * (4.0 * h + b * h + if full { b * h } else { 0.0 });
            let attention = match spec.attention {
                Attention::Flash => b * q + 4.0 * heads,
                Attention::Eager => {
                    let repeated = if s.kv_heads < s.heads { 2.0 * b * q } else { 0.0 };
                    repeated + (4.0 + b) * heads * spec.seq_len as f64
                }
            };
            norms + b * (q + 2.0 * kv) + attention + b * q + 4.0 * b * i + b * adapted
        }
    }
}

/// The plan of `spec` (validated).
pub fn plan(spec: &Spec) -> Result<Plan> {
    spec.validate()?;
    let mut plan = estimate(spec);
    plan.max_seq_len = max_seq_len(spec);
    plan.suggestions = suggestions(spec);
    Ok(plan)
}

/// Weights, optimizer states and gradients: what does not depend on the tokens.
struct State {
    weights: f64,
    weights_detail: String,
    optimizer: f64,
    /// Optimizer bytes per trained parameter.
    per_parameter: f64,
    offload_optimizer: bool,
    /// Gradients on the device at the end of the backward pass.
    grads_at_end: f64,
    /// Bytes per trained LoRA value (f32 under PEFT).
    lora_b: f64,
}

fn state(spec: &Spec) -> State {
    use std::fmt::Write;
    let s = &spec.shape;
    let trainable = spec.trainable();
    let full = matches!(spec.method, Method::Full);
    let b = if spec.trainer == Trainer::Longctx { 4.0 } else { spec.dtype.bytes() };
    let g = spec.gpus as f64;
    let hf = spec.trainer == Trainer::Hf;
    // LoRA weights (and their gradients and AdamW moments): f32 under PEFT.
    let lora_b = if hf && !full { 4.0 } else { b };
    let rest = s.params() - s.linear_params();
    let (linear, rest_b) = match spec.base_quant.bytes() {
        Some(per) => (s.linear_params() * per, if hf { 4.0 } else { b }),
        None => (s.linear_params() * b, b),
    };
    let mut weights = linear + rest * rest_b + if full { 0.0 } else { trainable * lora_b };
    let mut weights_detail = format!("{:.3} B parameters", s.params() / 1e9);
    if spec.base_quant != BaseQuant::None {
        let _ = write!(weights_detail, ", projections as {:?}", spec.base_quant);
    }
    if spec.zero == 3 {
        // Sharded, plus the gathered parameters of the layer being computed and the next.
        let gathered = 2.0 * s.layer_params() * b;
        weights = if spec.offloads(Offload::Params) { gathered } else { weights / g + gathered };
        let _ = write!(weights_detail, ", ZeRO-3 over {} GPUs (+ 2 gathered layers)", spec.gpus);
    }

    // Optimizer states.
    let state_bytes = match spec.optimizer {
        Optimizer::Adamw => 2.0 * lora_b,
        Optimizer::Adamw8bit => 2.0,
    };
    let offload_optimizer = spec.offloads(Offload::Optimizer) || spec.offloads(Offload::Params);
    let optimizer =
        if offload_optimizer { 0.0 } else { trainable * state_bytes / if spec.zero >= 1 { g } else { 1.0 } };

    // Gradients: all of them at the end of the backward pass, or one tensor in flight when
    // the optimizer runs off the device.
    let all_grads = trainable * lora_b / if spec.zero >= 2 { g } else { 1.0 };
    let grads_at_end = if offload_optimizer { spec.largest_trainable() * lora_b } else { all_grads };

    State { weights, weights_detail, optimizer, per_parameter: state_bytes, offload_optimizer, grads_at_end, lora_b }
}

/// The logits and the loss's copies of them, and how they were counted.
fn logits(spec: &Spec, tokens: f64) -> (f64, String) {
    let s = &spec.shape;
    let (h, vocab) = (s.hidden as f64, s.vocab as f64);
    let full = matches!(spec.method, Method::Full);
    let longctx = spec.trainer == Trainer::Longctx;
    let b = if longctx { 4.0 } else { spec.dtype.bytes() };
    if longctx {
        // The head at target rows, 1,024 at a time: logits, their copy and their gradient.
        let rows = tokens.min(LONGCTX_HEAD_CHUNK as f64);
        let head_grad = if full { 2.0 * vocab * h * 4.0 } else { 0.0 };
        (
            3.0 * rows * vocab * 4.0 + 3.0 * tokens * h * 4.0 + head_grad,
            format!("{rows} rows × {} vocab, f32 ×3", s.vocab),
        )
    } else {
        match spec.logits {
            // The logits, their f32 upcast, its shifted copy, log-softmax and its gradient.
            Logits::Full => {
                let copies = if b < 4.0 { 4.0 } else { 3.0 };
                (tokens * vocab * (b + 4.0 * copies), format!("{tokens} × {} vocab, whole f32 upcast", s.vocab))
            }
            // All chunks' logits, and one chunk upcast at a time (the loss compiled, as
            // torchtune compiles it, keeps no f32 copy for the backward pass).
            Logits::Chunked => (
                tokens * vocab * b + tokens / LOSS_CHUNKS * vocab * 4.0,
                format!("{tokens} × {} vocab in {:?}, one f32 chunk of {LOSS_CHUNKS}", s.vocab, spec.dtype),
            ),
        }
    }
}

/// The scratch of the attention of the layer running.
fn attention_workspace(spec: &Spec, tokens: f64) -> f64 {
    if spec.trainer == Trainer::Longctx {
        // Per thread: a block of scores (forward), scores and their gradients (backward).
        2.0 * (spec.threads * LONGCTX_ATTENTION_BLOCK * spec.seq_len) as f64 * 4.0
    } else if spec.attention == Attention::Eager {
        tokens * spec.shape.heads as f64 * spec.seq_len as f64 * (4.0 + spec.dtype.bytes())
    } else {
        0.0
    }
}

/// The estimate without the searches.
fn estimate(spec: &Spec) -> Plan {
    let s = &spec.shape;
    let (h, q, kv, i) = s.widths();
    let layers = s.layers as f64;
    let tokens = (spec.per_device() * spec.seq_len) as f64;
    let trainable = spec.trainable();
    let longctx = spec.trainer == Trainer::Longctx;
    let b = if longctx { 4.0 } else { spec.dtype.bytes() };

    let State { weights, weights_detail, optimizer, per_parameter, offload_optimizer, grads_at_end, lora_b } =
        state(spec);
    // Gradients already there while the loss runs: accumulated from earlier micro-batches.
    let grads_at_loss = if spec.grad_accum > 1 { grads_at_end } else { 0.0 };

    // Activations.
    let per_layer_token = layer_activation_bytes(spec);
    let checkpointed = spec.checkpointing == Checkpointing::Layer;
    let inputs = if spec.offloads(Offload::Activations) { 0.0 } else { layers * tokens * h * b };
    let kept = if checkpointed { inputs } else { layers * tokens * per_layer_token };
    let recomputed = if checkpointed { tokens * per_layer_token } else { 0.0 };

    let attention = attention_workspace(spec, tokens);
    let (logits, logits_detail) = logits(spec, tokens);

    // Gradients in flight through one layer.
    let temporary = if longctx {
        // Attention's backward copies q, k, v, o and the upstream gradient and makes dq, dk, dv;
        // the layer's input gradient and the MLP's.
        tokens * 4.0 * (4.0 * q + 4.0 * kv + 2.0 * i + 2.0 * h)
    } else {
        tokens * b * (2.0 * h + 2.0 * i)
    };

    let at_loss = kept + logits + grads_at_loss;
    // longctx, full fine-tuning: the embedding's gradient from the lookup, and its sum with the
    // head's (tied or not, a `vocab × hidden` pair made when every other gradient exists).
    let embedding_grads =
        if longctx && matches!(spec.method, Method::Full) { 2.0 * (s.vocab * s.hidden) as f64 * 4.0 } else { 0.0 };
    let at_backward = kept + recomputed + temporary + embedding_grads + attention + grads_at_end;
    // longctx's AdamW step (activations freed): every gradient, and per tensor a handful of
    // temporaries (the decayed weights, the moments' new values, the update) of the largest.
    let step_temporaries = if longctx { 5.0 * spec.largest_trainable() * 4.0 } else { 0.0 };
    let at_step = grads_at_end + step_temporaries;
    let (peak_at, activations, logits_part, temp_part, attn_part, grads_part) = if at_step > at_loss.max(at_backward) {
        ("optimizer step", 0.0, 0.0, step_temporaries, 0.0, grads_at_end)
    } else if at_loss >= at_backward {
        ("loss", kept, logits, 0.0, if checkpointed { 0.0 } else { attention }, grads_at_loss)
    } else {
        ("backward", kept + recomputed, 0.0, temporary + embedding_grads, attention, grads_at_end)
    };
    let counted = weights + optimizer + activations + attn_part + logits_part + temp_part + grads_part;
    // The longctx trainer's peak is at least its loading peak.
    let runtime = if longctx { spec.runtime.max(LONGCTX_LOAD_PEAK - counted) } else { CUDA_RUNTIME };
    let parts = vec![
        Part { name: "weights", bytes: weights, detail: weights_detail },
        Part {
            name: "gradients",
            bytes: grads_part,
            detail: format!("{:.1} M trained parameters, {lora_b} bytes each", trainable / 1e6),
        },
        Part {
            name: "optimizer_states",
            bytes: optimizer,
            detail: if offload_optimizer {
                "on the host".into()
            } else {
                format!("{:?}, {per_parameter} bytes per parameter", spec.optimizer)
            },
        },
        Part {
            name: "activations",
            bytes: activations,
            detail: if checkpointed {
                format!("{layers} layer inputs + 1 layer recomputed, {tokens} tokens")
            } else {
                format!("{layers} layers × {:.1} KiB per token, {tokens} tokens", per_layer_token / 1024.0)
            },
        },
        Part { name: "attention_workspace", bytes: attn_part, detail: format!("{:?}", spec.attention) },
        Part { name: "logits", bytes: logits_part, detail: logits_detail },
        Part {
            name: "temporary_buffers",
            bytes: temp_part,
            detail: if peak_at == "optimizer step" {
                "the optimizer step's temporaries".into()
            } else {
                "gradients in flight through one layer".into()
            },
        },
        Part {
            name: "runtime",
            bytes: runtime,
            detail: if longctx {
                "process baseline, or the loading peak when larger (measured)".into()
            } else {
                "CUDA context and allocator slack".into()
            },
        },
    ];
    let peak: f64 = parts.iter().map(|p| p.bytes).sum();
    Plan {
        spec: spec.clone(),
        params: s.params(),
        trainable_params: trainable,
        parts,
        activations_per_layer_bytes: tokens * per_layer_token,
        peak_at,
        peak_bytes: peak,
        budget_bytes: spec.budget,
        fits: peak <= spec.budget,
        over_by_bytes: (peak - spec.budget).max(0.0),
        max_seq_len: 0,
        suggestions: Vec::new(),
    }
}

/// The longest sequence that fits (0: not even one token).
fn max_seq_len(spec: &Spec) -> usize {
    let fits = |n: usize| estimate(&Spec { seq_len: n, ..spec.clone() }).fits;
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1usize, 1usize << 24);
    if fits(hi) {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The single changes that apply to `spec` (each keeps the combination valid).
fn candidates(spec: &Spec) -> Vec<(String, Spec)> {
    let mut changes: Vec<(String, Spec)> = Vec::new();
    let mut with = |label: String, f: &dyn Fn(&mut Spec)| {
        let mut s = spec.clone();
        f(&mut s);
        if s != *spec && s.validate().is_ok() {
            changes.push((label, s));
        }
    };
    let offload = |what: Offload| {
        move |s: &mut Spec| {
            if !s.offload.contains(&what) {
                s.offload.push(what);
            }
        }
    };
    with("--checkpointing layer".into(), &|s| s.checkpointing = Checkpointing::Layer);
    if matches!(spec.method, Method::Full) {
        with("--lora 16".into(), &|s| s.method = Method::Lora { r: 16, targets: all_modules(), dropout: false });
    }
    if spec.trainer == Trainer::Longctx {
        if matches!(spec.method, Method::Lora { .. }) {
            with("--base-quant q4_0".into(), &|s| s.base_quant = BaseQuant::Q4_0);
        }
        return changes;
    }
    with("--attention flash".into(), &|s| s.attention = Attention::Flash);
    with("--logits chunked".into(), &|s| s.logits = Logits::Chunked);
    with("--optimizer adamw-8bit".into(), &|s| s.optimizer = Optimizer::Adamw8bit);
    with("--offload optimizer".into(), &offload(Offload::Optimizer));
    with("--offload activations".into(), &offload(Offload::Activations));
    if matches!(spec.method, Method::Lora { .. }) {
        with("--base-quant nf4".into(), &|s| s.base_quant = BaseQuant::Nf4);
    }
    if spec.gpus > 1 && spec.zero < 3 {
        with("--zero 3".into(), &|s| s.zero = 3);
    }
    if spec.zero == 3 {
        with("--offload params".into(), &offload(Offload::Params));
    }
    if spec.gpus == 1 && spec.per_device() == 1 {
        // One node of 8 GPUs, one sequence each, everything sharded.
        with("--gpus 8 --micro-batch 8 --zero 3".into(), &|s| {
            s.gpus = 8;
            s.micro_batch = 8;
            s.zero = 3;
        });
    }
    if spec.per_device() > 1 {
        with(format!("--micro-batch {}", spec.gpus), &|s| s.micro_batch = s.gpus);
    }
    changes
}

/// Changes to `spec` that lower its peak: each alone, sorted by the peak it gives (the largest
/// effect first), then — when none alone suffices — the changes taken greedily, the largest
/// effect each time, until the run fits (or nothing lowers it further).
fn suggestions(spec: &Spec) -> Vec<Suggestion> {
    let peak = estimate(spec).peak_bytes;
    let suggest = |change: String, s: &Spec| {
        let e = estimate(s);
        Suggestion { change, peak_bytes: e.peak_bytes, fits: e.fits, max_seq_len: max_seq_len(s) }
    };
    let mut out: Vec<Suggestion> =
        candidates(spec).into_iter().map(|(change, s)| suggest(change, &s)).filter(|s| s.peak_bytes < peak).collect();
    out.sort_by(|a, b| a.peak_bytes.total_cmp(&b.peak_bytes));
    if !out.iter().any(|s| s.fits) {
        let (mut current, mut labels) = (spec.clone(), Vec::new());
        while !estimate(&current).fits {
            let best = candidates(&current)
                .into_iter()
                .map(|(label, s)| (estimate(&s).peak_bytes, label, s))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((p, label, s)) if p < estimate(&current).peak_bytes => {
                    labels.push(label);
                    current = s;
                }
                _ => break,
            }
        }
        if labels.len() > 1 {
            out.push(suggest(labels.join(" "), &current));
        }
    }
    out
}

/// `bytes` in GiB.
pub fn gib(bytes: f64) -> f64 {
    bytes / GIB
}

impl Plan {
    /// The plan as the terminal shows it.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let s = &self.spec;
        let mut out = String::new();
        let method = match &s.method {
            Method::Full => "full fine-tuning".to_string(),
            Method::Lora { r, targets, .. } => format!("LoRA r={r} on {}", targets.join(",")),
        };
        let _ = writeln!(
            out,
            "{:.2} B parameters, {method} ({:.1} M trained); {} × {} tokens per forward pass on {} device(s), trainer {:?}",
            self.params / 1e9,
            self.trainable_params / 1e6,
            s.micro_batch,
            s.seq_len,
            s.gpus,
            s.trainer
        );
        let _ = writeln!(out, "\npeak per device (at the {}):", self.peak_at);
        for p in &self.parts {
            let _ = writeln!(out, "  {:<20} {:>9.2} GiB  {}", p.name, gib(p.bytes), p.detail);
        }
        let _ = writeln!(out, "  {:<20} {:>9.2} GiB", "total", gib(self.peak_bytes));
        let _ = writeln!(
            out,
            "  activations of one layer: {:.2} GiB (without checkpointing)",
            gib(self.activations_per_layer_bytes)
        );
        let _ = writeln!(out);
        if self.fits {
            let _ = writeln!(
                out,
                "fits in {:.1} GiB ({:.1} GiB free)",
                gib(self.budget_bytes),
                gib(self.budget_bytes - self.peak_bytes)
            );
        } else {
            let _ = writeln!(
                out,
                "OUT OF MEMORY: needs {:.1} GiB of {:.1} GiB, over by {:.1} GiB",
                gib(self.peak_bytes),
                gib(self.budget_bytes),
                gib(self.over_by_bytes)
            );
        }
        let _ = writeln!(out, "longest sequence that fits with these settings: {}", self.max_seq_len);
        if !self.suggestions.is_empty() {
            let _ = writeln!(out, "\nchanges, largest effect first:");
            for c in &self.suggestions {
                let _ = writeln!(
                    out,
                    "  {:<60} {:>8.2} GiB  {}  (longest: {})",
                    c.change,
                    gib(c.peak_bytes),
                    if c.fits { "fits" } else { "out of memory" },
                    c.max_seq_len
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_8b() -> Shape {
        Shape {
            vocab: 128_256,
            hidden: 4096,
            intermediate: 14_336,
            layers: 32,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            tied: false,
        }
    }

    fn base(shape: Shape) -> Spec {
        Spec { method: Method::Full, ..Spec::new(Trainer::Hf, shape, 2048) }
    }

    #[test]
    fn llama_31_8b_has_its_parameter_count() {
        assert_eq!(llama_8b().params(), 8_030_261_248.0);
        assert_eq!(llama_8b().linear_params(), 6_979_321_856.0);
    }

    #[test]
    fn the_logits_upcast_is_what_the_issue_says_at_64k() {
        // 65,536 × 128,256 × 4 bytes = 33.6 GB: one of the four f32 copies of the full loss.
        let spec = Spec { seq_len: 65_536, ..base(llama_8b()) };
        let p = estimate(&spec);
        let logits = p.parts.iter().find(|p| p.name == "logits").unwrap().bytes;
        assert!(logits == 0.0 || (logits - 65_536.0 * 128_256.0 * 18.0).abs() < 1.0);
        let one_copy: f64 = 65_536.0 * 128_256.0 * 4.0;
        assert!((one_copy / 1e9 - 33.6).abs() < 0.05);
    }

    #[test]
    fn more_tokens_never_need_less_memory_and_the_search_finds_the_edge() {
        let spec = Spec {
            checkpointing: Checkpointing::Layer,
            method: Method::Lora { r: 8, targets: vec!["q_proj".into()], dropout: false },
            ..base(llama_8b())
        };
        let mut last = 0.0;
        for n in [1, 512, 4096, 32_768, 131_072] {
            let p = estimate(&Spec { seq_len: n, ..spec.clone() }).peak_bytes;
            assert!(p > last);
            last = p;
        }
        let n = max_seq_len(&spec);
        assert!(estimate(&Spec { seq_len: n, ..spec.clone() }).fits);
        assert!(!estimate(&Spec { seq_len: n + 1, ..spec.clone() }).fits);
    }

    #[test]
    fn bad_combinations_say_what_to_change() {
        let err = |s: Spec| s.validate().unwrap_err().to_string();
        assert!(err(Spec { gpus: 4, micro_batch: 6, ..base(llama_8b()) }).contains("not divisible by --gpus 4"));
        assert!(err(Spec { zero: 3, ..base(llama_8b()) }).contains("with one GPU"));
        assert!(err(Spec { base_quant: BaseQuant::Nf4, ..base(llama_8b()) }).contains("needs --lora"));
        assert!(err(Spec { offload: vec![Offload::Params], gpus: 2, micro_batch: 2, zero: 2, ..base(llama_8b()) })
            .contains("needs --zero 3"));
        assert!(err(Spec { trainer: Trainer::Longctx, ..base(llama_8b()) }).contains("--trainer hf"));
    }

    #[test]
    fn suggestions_lower_the_peak_and_come_largest_effect_first() {
        let spec = Spec { seq_len: 131_072, logits: Logits::Full, attention: Attention::Eager, ..base(llama_8b()) };
        let plan = plan(&spec).unwrap();
        assert!(!plan.fits);
        assert!(!plan.suggestions.is_empty());
        // Single changes by effect, then (none alone fits) the greedy combination that fits.
        let (combined, single) = plan.suggestions.split_last().unwrap();
        assert!(single.windows(2).all(|w| w[0].peak_bytes <= w[1].peak_bytes));
        assert!(!single.iter().any(|s| s.fits));
        assert!(combined.fits && combined.change.matches("--").count() > 1, "{}", combined.change);
        assert!(plan.suggestions.iter().all(|s| s.peak_bytes < plan.peak_bytes));
        let sum: f64 = plan.parts.iter().map(|p| p.bytes).sum();
        assert_eq!(sum, plan.peak_bytes);
    }

    #[test]
    fn a_training_file_becomes_the_plan_of_its_longest_micro_batch() {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train/llama");
        let text = format!(
            "name = \"t\"\n[model]\npath = {:?}\n[data]\npath = \"d.jsonl\"\nmax_seq_len = 512\n\
             [lora]\nr = 4\ntarget_modules = [\"q_proj\", \"v_proj\"]\nbase_quant = \"q4_0\"\n\
             [optim]\nmicro_batch_tokens = 4096\ngrad_accum = 2\ngradient_checkpointing = true\n",
            model.display()
        );
        let config = crate::config::TrainConfig::parse(&text).unwrap();
        let Some(spec) = training_spec(&config).unwrap() else { return }; // no /proc/meminfo
        assert_eq!((spec.trainer, spec.seq_len, spec.grad_accum), (Trainer::Longctx, 4096, 2));
        assert_eq!(spec.method, Method::Lora { r: 4, targets: vec!["q_proj".into(), "v_proj".into()], dropout: false });
        assert_eq!((spec.checkpointing, spec.base_quant), (Checkpointing::Layer, BaseQuant::Q4_0));
        assert_eq!(spec.shape.hidden, 32);
        assert!(spec.budget > 0.0);
        let dropout = text.replace("r = 4\n", "r = 4\ndropout = 0.1\n");
        let spec = training_spec(&crate::config::TrainConfig::parse(&dropout).unwrap()).unwrap().unwrap();
        assert!(matches!(spec.method, Method::Lora { dropout: true, .. }));
        // Dropout masks are kept per adapted input.
        assert!(
            layer_activation_bytes(&spec)
                > layer_activation_bytes(&Spec {
                    method: Method::Lora { r: 4, targets: vec!["q_proj".into(), "v_proj".into()], dropout: false },
                    ..spec.clone()
                })
        );
    }
}
