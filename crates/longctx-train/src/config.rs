//! The training file (TOML) of `longctx train`.
//!
//! ```toml
//! name = "smollm2-lora"            # the run directory: <output_dir>/<name>/
//! output_dir = "runs/train"        # default runs/train
//! full = false                     # true: full fine-tuning instead of [lora]
//!
//! [model]
//! path = "assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # model directory, hub id or GGUF file
//! dtype = "f32"                    # weights of a safetensors model: f32 or bf16
//! rope_scaling = "linear:4"        # optional RoPE override KIND:FACTOR
//!
//! [data]
//! path = "data/train-sample/train.jsonl"   # or hub = "THUDM/LongAlign-10k", file = "long.jsonl"
//! max_seq_len = 2048               # longer conversations are dropped (or cut: overlong = "truncate")
//! batching = "packed"              # naive, sorted or packed
//! loss = "longalign"               # or token-mean
//!
//! [lora]
//! r = 16
//! alpha = 32
//! dropout = 0.05
//! target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
//! rslora = false
//!
//! [optim]
//! lr = 2e-4
//! warmup_steps = 10                # or warmup_ratio = 0.03
//! schedule = "cosine"              # cosine, linear or constant
//! epochs = 3
//! micro_batch_tokens = 4096        # tokens per forward pass (packed and sorted batching)
//! grad_accum = 4                   # micro-batches per optimizer step
//! clip = 1.0                       # global gradient norm (0: no clipping)
//! weight_decay = 0.0
//! betas = [0.9, 0.999]
//! eps = 1e-8
//! seed = 42
//! gradient_checkpointing = true
//!
//! [output]
//! save_every = 50                  # checkpoint every N optimizer steps (0: only at the end)
//! keep_checkpoints = 2
//!
//! [distributed]                    # only for `longctx train --export` (a GPU job)
//! gpus = 8
//! sharding = "zero3"               # none, zero1, zero2, zero3 (DeepSpeed) or fsdp
//! ```
//!
//! Unknown keys are errors.

use std::path::PathBuf;

use longctx_models::llama::{Part, WeightFormat};
use longctx_models::qmatmul::BlockKind;
use serde::{Deserialize, Serialize};

use crate::batch::Batching;
use crate::data::{DataSource, Overlong};
use crate::loss::LossKind;
use crate::optim::{AdamWConfig, Schedule};
use crate::{Error, Result};

/// The training file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Name of the run directory.
    pub name: String,
    /// Where run directories go.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Full fine-tuning (every weight) instead of LoRA.
    #[serde(default)]
    pub full: bool,
    /// The base model.
    pub model: ModelSection,
    /// The data.
    pub data: DataSection,
    /// LoRA settings (defaults when absent and `full` is false).
    #[serde(default)]
    pub lora: Option<LoraSection>,
    /// Optimization.
    #[serde(default)]
    pub optim: OptimSection,
    /// Checkpoints.
    #[serde(default)]
    pub output: OutputSection,
    /// GPUs and sharding of an exported job (`longctx train --export`); longctx's own CPU
    /// trainer does not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedSection>,
}

/// `[distributed]`: how an exported job spreads over GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedSection {
    /// Data-parallel GPUs (one optimizer step holds `gpus × grad_accum` micro-batches).
    #[serde(default = "one")]
    pub gpus: usize,
    /// `none` (data parallel), `zero1`, `zero2`, `zero3` (DeepSpeed) or `fsdp`.
    #[serde(default = "default_sharding")]
    pub sharding: String,
}

fn default_sharding() -> String {
    "none".into()
}

impl Default for DistributedSection {
    fn default() -> Self {
        Self { gpus: 1, sharding: default_sharding() }
    }
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs/train")
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model directory, hub id or GGUF file (GGUF weights are dequantized to f32 to train).
    pub path: String,
    /// `f32` (default) or `bf16` for the frozen weights of a safetensors model.
    #[serde(default)]
    pub dtype: Option<String>,
    /// RoPE override `KIND:FACTOR`.
    #[serde(default)]
    pub rope_scaling: Option<String>,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A local chat JSONL file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A dataset repository on the hub (with `file`).
    #[serde(default)]
    pub hub: Option<String>,
    /// The file of the hub repository.
    #[serde(default)]
    pub file: Option<String>,
    /// Longest sequence trained on, in tokens.
    pub max_seq_len: usize,
    /// What happens to longer conversations.
    #[serde(default)]
    pub overlong: Overlong,
    /// How sequences are grouped.
    #[serde(default)]
    pub batching: Batching,
    /// The loss.
    #[serde(default)]
    pub loss: LossKind,
    /// Use only the first N conversations of the file.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl DataSection {
    /// Where the data comes from.
    pub fn source(&self) -> Result<DataSource> {
        match (&self.path, &self.hub, &self.file) {
            (Some(p), None, None) => Ok(DataSource::File(p.clone())),
            (None, Some(repo), Some(file)) => Ok(DataSource::Hub { repo: repo.clone(), file: file.clone() }),
            (None, Some(_), None) => Err(Error::Config("[data] hub needs `file` (e.g. file = \"long.jsonl\")".into())),
            _ => Err(Error::Config("[data] needs either `path` or `hub` with `file`".into())),
        }
    }
}

/// `[lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scaling numerator.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the update's input.
    #[serde(default)]
    pub dropout: f64,
    /// Adapted projections.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// rsLoRA scaling (`alpha / √r`).
    #[serde(default)]
    pub rslora: bool,
    /// QLoRA: the frozen base quantized at load to `q8_0`, `q4_0` or `q4_1` (llama.cpp's
    /// blocks), or `gguf` to keep a GGUF file's own quantized matrices (by default a GGUF file
    /// trains dequantized to f32); the products run on the dequantized weights, the LoRA
    /// weights stay f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_quant: Option<String>,
}

fn default_r() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    Part::PROJECTIONS.iter().map(|p| p.module_name().to_string()).collect()
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            r: default_r(),
            alpha: default_alpha(),
            dropout: 0.0,
            target_modules: default_targets(),
            rslora: false,
            base_quant: None,
        }
    }
}

impl LoraSection {
    /// The format `base_quant` quantizes a safetensors model to, if any (`gguf`: none).
    pub fn base_quant(&self) -> Result<Option<WeightFormat>> {
        Ok(match self.base_quant.as_deref() {
            None | Some("gguf") => None,
            Some("q8_0") => Some(BlockKind::Q8_0.into()),
            Some("q4_0") => Some(BlockKind::Q4_0.into()),
            Some("q4_1") => Some(BlockKind::Q4_1.into()),
            Some("nf4") => Some(WeightFormat::Nf4),
            Some(other) => {
                return Err(Error::Config(format!(
                    "[lora] base_quant `{other}` is not one of q8_0, q4_0, q4_1, nf4, gguf"
                )))
            }
        })
    }

    /// The adapted projections.
    pub fn parts(&self) -> Result<Vec<Part>> {
        self.target_modules
            .iter()
            .map(|m| {
                Part::from_module_name(m).ok_or_else(|| {
                    Error::Config(format!(
                        "[lora] target module `{m}` is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                    ))
                })
            })
            .collect()
    }
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Warm-up steps (overrides `warmup_ratio`).
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    /// Warm-up as a share of all steps.
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    /// The decay after warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Passes over the data.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Tokens per forward pass (default: `max_seq_len`).
    #[serde(default)]
    pub micro_batch_tokens: Option<usize>,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Global gradient-norm clipping (0: none).
    #[serde(default = "default_clip")]
    pub clip: Option<f64>,
    /// Decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Adam's β₁, β₂.
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// Adam's ε.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Seed of data order, LoRA initialization and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Recompute each layer in the backward pass (less memory, about a third more compute).
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Stop after this many optimizer steps (the schedule still spans every epoch).
    #[serde(default)]
    pub max_steps: Option<usize>,
}

fn default_lr() -> f64 {
    2e-4
}
fn default_epochs() -> usize {
    1
}
fn one() -> usize {
    1
}
#[allow(clippy::unnecessary_wraps)]
fn default_clip() -> Option<f64> {
    Some(1.0)
}
fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}
fn default_seed() -> u64 {
    42
}

impl Default for OptimSection {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl OptimSection {
    /// AdamW's settings.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig { betas: self.betas, eps: self.eps, weight_decay: self.weight_decay }
    }

    /// Warm-up steps for a run of `total` steps.
    pub fn warmup(&self, total: usize) -> usize {
        self.warmup_steps.unwrap_or_else(|| (self.warmup_ratio.unwrap_or(0.0) * total as f64).ceil() as usize)
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Checkpoint every N optimizer steps (0: only the final weights).
    #[serde(default = "default_save_every")]
    pub save_every: usize,
    /// Checkpoints kept (older ones are removed).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
}

fn default_save_every() -> usize {
    50
}
fn default_keep() -> usize {
    2
}

impl Default for OutputSection {
    fn default() -> Self {
        Self { save_every: default_save_every(), keep_checkpoints: default_keep() }
    }
}

impl TrainConfig {
    /// Parses and checks a training file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let c: TrainConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return bad(format!("`name` must be a plain directory name, not `{}`", self.name));
        }
        if self.full && self.lora.is_some() {
            return bad("`full = true` and a [lora] section: choose one".into());
        }
        self.data.source()?;
        if self.data.max_seq_len < 2 {
            return bad("[data] max_seq_len must be at least 2".into());
        }
        if let Some(l) = &self.lora {
            l.parts()?;
            l.base_quant()?;
            if l.r == 0 {
                return bad("[lora] r must be positive".into());
            }
            if !(0.0..1.0).contains(&l.dropout) {
                return bad(format!("[lora] dropout {} is not in [0, 1)", l.dropout));
            }
        }
        let o = &self.optim;
        if o.epochs == 0 || o.grad_accum == 0 {
            return bad("[optim] epochs and grad_accum must be positive".into());
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad(format!("[optim] lr {} must be a positive number", o.lr));
        }
        if let Some(d) = &self.distributed {
            d.sharding.parse::<crate::export::Sharding>().map_err(Error::Config)?;
            if d.gpus == 0 {
                return bad("[distributed] gpus must be at least 1".into());
            }
        }
        if let Some(dtype) = &self.model.dtype {
            if !matches!(dtype.as_str(), "f32" | "bf16") {
                return bad(format!("[model] dtype `{dtype}` (f32 or bf16)"));
            }
        }
        Ok(())
    }

    /// The LoRA settings in use (none for full fine-tuning).
    pub fn lora(&self) -> Option<LoraSection> {
        if self.full {
            None
        } else {
            Some(self.lora.clone().unwrap_or_default())
        }
    }

    /// Tokens per micro-batch.
    pub fn micro_batch_tokens(&self) -> usize {
        self.optim.micro_batch_tokens.unwrap_or(self.data.max_seq_len).max(self.data.max_seq_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"t\"\n[model]\npath = \"m\"\n[data]\npath = \"d.jsonl\"\nmax_seq_len = 512\n";

    #[test]
    fn the_shipped_training_files_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut names = Vec::new();
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap();
            if text.lines().any(|l| l.trim() == "[data]") {
                let c = TrainConfig::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                names.push(c.name);
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "finetune-smollm2",
                "longalign-llama31-8b",
                "qlora-vs-lora-f32",
                "qlora-vs-lora-nf4",
                "rope-finetune-lora",
                "rope-finetune-smollm2-lora"
            ]
        );
    }

    #[test]
    fn defaults_and_errors() {
        let c = TrainConfig::parse(BASE).unwrap();
        assert_eq!(c.lora().unwrap().r, 16);
        assert_eq!(c.optim.clip, Some(1.0));
        assert_eq!(c.micro_batch_tokens(), 512);
        assert_eq!(c.data.loss, LossKind::LongAlign);
        let typo = format!("{BASE}[optim]\nlearning_rate = 1.0\n");
        assert!(TrainConfig::parse(&typo).unwrap_err().to_string().contains("learning_rate"));
        let both = format!("full = true\n{BASE}[lora]\nr = 4\n");
        assert!(TrainConfig::parse(&both).unwrap_err().to_string().contains("choose one"));
        let quant = format!("{BASE}[lora]\nbase_quant = \"q5_k\"\n");
        assert!(TrainConfig::parse(&quant).unwrap_err().to_string().contains("base_quant `q5_k`"));
        let quant = format!("{BASE}[lora]\nbase_quant = \"q4_0\"\n");
        assert_eq!(
            TrainConfig::parse(&quant).unwrap().lora().unwrap().base_quant().unwrap(),
            Some(BlockKind::Q4_0.into())
        );
        let target = format!("{BASE}[lora]\ntarget_modules = [\"qkv\"]\n");
        assert!(TrainConfig::parse(&target).unwrap_err().to_string().contains("`qkv`"));
        let hub = BASE.replace("path = \"d.jsonl\"", "hub = \"THUDM/LongAlign-10k\"");
        assert!(TrainConfig::parse(&hub).unwrap_err().to_string().contains("file"));
        let loss = format!("{BASE}loss = \"token-mean\"\nbatching = \"sorted\"\n");
        let c = TrainConfig::parse(&loss).unwrap();
        assert_eq!((c.data.loss, c.data.batching), (LossKind::TokenMean, Batching::Sorted));
        assert_eq!(c.optim.warmup(100), 0);
    }
}
