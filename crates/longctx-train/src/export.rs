//! `longctx train CONFIG --export DIR --engine trl|axolotl|torchtune`: the training run of a
//! configuration written as a job an existing distributed trainer runs unchanged on GPUs.
//!
//! The data goes out as longctx would train on it: rendered with the model's chat template,
//! tokenized, masked (assistant tokens only), grouped by the configuration's batching and packed
//! into micro-batches of at most `micro_batch_tokens` tokens, in the order of the run (every
//! epoch's own shuffle). One line of `data/packs.jsonl` is one micro-batch on one GPU:
//!
//! ```json
//! {"step": 0, "input_ids": [...], "labels": [...], "position_ids": [...],
//!  "seq_lens": [...], "seq_weights": [...]}
//! ```
//!
//! `labels` are transformers' (the token itself where it is a target, −100 elsewhere; the model
//! shifts them), `position_ids` restart at 0 with every sequence (the packing boundary: no
//! token attends across it), and `seq_weights[i]` is the loss weight of every target token of
//! the pack's i-th sequence (`seq_lens[i]` tokens), from the configuration's loss over the
//! *global* optimizer step (`gpus × grad_accum` packs): a step's loss is `Σ w · ℓ` over its
//! target tokens, which is the token mean (`token-mean`) or LongAlign's mean of per-sequence
//! means (`longalign`). A step that would have fewer packs (an epoch's end) is filled with
//! copies of its shortest pack weighted 0, so every engine's step holds exactly its packs.
//!
//! None of the engines weighs a loss per token, so the export ships a small hook for each,
//! documented in the job's README: a `compute_loss` override for trainers built on
//! transformers' `Trainer` (TRL, axolotl's plugin) and a recipe subclass for torchtune.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::batch::plan_steps;
use crate::config::TrainConfig;
use crate::data::Encoded;
use crate::{Error, Result};

/// The engines a job can be exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Hugging Face TRL's `SFTTrainer` (accelerate, DeepSpeed or FSDP).
    Trl,
    /// axolotl (a YAML file, accelerate, DeepSpeed or FSDP).
    Axolotl,
    /// torchtune's LoRA / full fine-tuning recipes (`tune run`, torchrun).
    Torchtune,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trl" => Ok(Self::Trl),
            "axolotl" => Ok(Self::Axolotl),
            "torchtune" => Ok(Self::Torchtune),
            other => Err(format!("unknown engine `{other}`: longctx exports to trl, axolotl or torchtune")),
        }
    }
}

impl Engine {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Trl => "trl",
            Engine::Axolotl => "axolotl",
            Engine::Torchtune => "torchtune",
        }
    }
}

/// How the model and optimizer are spread over the GPUs (`[distributed] sharding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sharding {
    /// Data parallel: every GPU holds everything.
    #[default]
    None,
    /// DeepSpeed ZeRO stage 1 (optimizer states sharded).
    Zero1,
    /// ZeRO stage 2 (+ gradients).
    Zero2,
    /// ZeRO stage 3 (+ weights).
    Zero3,
    /// PyTorch FSDP, full sharding.
    Fsdp,
}

impl std::str::FromStr for Sharding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "zero1" => Ok(Self::Zero1),
            "zero2" => Ok(Self::Zero2),
            "zero3" => Ok(Self::Zero3),
            "fsdp" => Ok(Self::Fsdp),
            other => Err(format!("[distributed] sharding `{other}` is not one of none, zero1, zero2, zero3, fsdp")),
        }
    }
}

impl Sharding {
    /// DeepSpeed's ZeRO stage, if DeepSpeed.
    pub fn zero_stage(self) -> Option<u8> {
        match self {
            Sharding::Zero1 => Some(1),
            Sharding::Zero2 => Some(2),
            Sharding::Zero3 => Some(3),
            Sharding::None | Sharding::Fsdp => None,
        }
    }
}

/// One micro-batch of the exported data (a line of `data/packs.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackRow {
    /// 0-based optimizer step.
    pub step: usize,
    /// Token ids of the packed sequences.
    pub input_ids: Vec<u32>,
    /// The token where it is a target, −100 elsewhere.
    pub labels: Vec<i64>,
    /// Positions, from 0 in each sequence.
    pub position_ids: Vec<u32>,
    /// Tokens of each sequence.
    pub seq_lens: Vec<usize>,
    /// The loss weight of each sequence's target tokens.
    pub seq_weights: Vec<f64>,
    /// Labels other than −100 in the whole step's packs (fillers included): torchtune's hook
    /// undoes the recipes' normalization with it.
    pub step_labels: usize,
}

/// The packs of a run over `data` for `gpus` data-parallel GPUs, in the order the engines read
/// them (at most `max_steps` steps).
pub fn packs(config: &TrainConfig, data: &[Encoded], gpus: usize, max_steps: Option<usize>) -> Vec<PackRow> {
    let per_step = config.optim.grad_accum * gpus.max(1);
    let lens: Vec<usize> = data.iter().map(Encoded::len).collect();
    let mut steps = plan_steps(
        &lens,
        config.data.batching,
        config.micro_batch_tokens(),
        per_step,
        config.optim.epochs,
        config.optim.seed,
    );
    if let Some(m) = max_steps {
        steps.truncate(m);
    }
    let mut rows = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        let n_targets: Vec<usize> = step.sequences().map(|i| data[i].n_targets()).collect();
        let weights = config.data.loss.weights(&n_targets);
        let mut k = 0;
        let first = rows.len();
        for mb in &step.micro_batches {
            let mut row = PackRow {
                step: s,
                input_ids: Vec::new(),
                labels: Vec::new(),
                position_ids: Vec::new(),
                seq_lens: Vec::new(),
                seq_weights: Vec::new(),
                step_labels: 0,
            };
            for &i in mb {
                let e = &data[i];
                row.input_ids.extend_from_slice(&e.ids);
                row.labels.extend(e.ids.iter().zip(&e.targets).enumerate().map(|(t, (&id, &target))| {
                    if target && t > 0 {
                        i64::from(id)
                    } else {
                        -100
                    }
                }));
                row.position_ids.extend(0..e.len() as u32);
                row.seq_lens.push(e.len());
                row.seq_weights.push(weights[k]);
                k += 1;
            }
            rows.push(row);
        }
        // An epoch's last step may be short of packs: fill it with weight-0 copies.
        let shortest = rows[first..].iter().min_by_key(|r| r.input_ids.len()).cloned();
        if let Some(mut filler) = shortest {
            filler.seq_weights.iter_mut().for_each(|w| *w = 0.0);
            while rows.len() - first < per_step {
                rows.push(filler.clone());
            }
        }
        let labels: usize = rows[first..].iter().map(|r| r.labels.iter().filter(|&&l| l != -100).count()).sum();
        rows[first..].iter_mut().for_each(|r| r.step_labels = labels);
    }
    rows
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The job directory.
    pub dir: PathBuf,
    /// The engine.
    pub engine: Engine,
    /// Optimizer steps of the job.
    pub steps: usize,
    /// Packs (lines of `data/packs.jsonl`), fillers included.
    pub packs: usize,
    /// Weight-0 filler packs.
    pub filler_packs: usize,
    /// GPUs the launch script starts.
    pub gpus: usize,
    /// Files written, relative to `dir`.
    pub files: Vec<String>,
    /// The command that runs the job.
    pub launch: String,
}

/// Python hook shared by the engines built on transformers' `Trainer`.
const HF_HOOKS: &str = include_str!("export/longctx_hooks.py");
/// TRL's training script.
const TRL_TRAIN: &str = include_str!("export/trl_train.py");

/// axolotl's plugin.
const AXOLOTL_PLUGIN: &str = include_str!("export/longctx_axolotl.py");

/// The version axolotl's job was run with.
pub const AXOLOTL_REQUIREMENTS: &str = "\
# The version this job was checked with (one step on CPU against `longctx loss`, by longctx's
# tools/oracles/export_fixtures.py); it pins its own transformers, peft, trl and accelerate.
axolotl==0.19.0
";

/// torchtune's components for the data, the loss weighting and the schedules.
const TORCHTUNE_HOOKS: &str = include_str!("export/longctx_torchtune.py");

/// The versions torchtune's job was run with.
pub const TORCHTUNE_REQUIREMENTS: &str = "\
# The versions this job was checked with (one step on CPU against `longctx loss`, by longctx's
# tools/oracles/export_fixtures.py); a GPU machine keeps its own CUDA build of torch.
torch>=2.6
torchtune==0.6.1
torchao==0.11.0
";

/// The versions the exported jobs were run with (by `tools/oracles/export_fixtures.py`).
pub const TRL_REQUIREMENTS: &str = "\
# The versions this job was checked with (one step on CPU against `longctx loss`, by longctx's
# tools/oracles/export_fixtures.py); a GPU machine keeps its own CUDA build of torch >= 2.6.
trl==1.16.0
transformers==5.25.0
peft==0.21.2
accelerate==1.16.0
datasets==5.2.0
pyyaml>=6
";

/// Checks that `config` can be exported to `engine`.
fn check(config: &TrainConfig, engine: Engine) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    let path = &config.model.path;
    if longctx_models::load::is_gguf(Path::new(path)) {
        return bad(format!(
            "{path}: {} trains safetensors models (a directory or a hub id), not GGUF files; export the model's safetensors version",
            engine.name()
        ));
    }
    if config.distributed.as_ref().is_some_and(|d| d.gpus == 0) {
        return bad("[distributed] gpus must be at least 1".into());
    }
    if let Some(lora) = config.lora() {
        if engine == Engine::Torchtune {
            torchtune_targets(&lora.target_modules)?;
        }
        match lora.base_quant.as_deref() {
            None | Some("nf4") => {}
            Some(other) => {
                return bad(format!(
                    "[lora] base_quant = \"{other}\" has no counterpart in {}: its QLoRA quantizes with bitsandbytes, use base_quant = \"nf4\" (or none)",
                    engine.name()
                ))
            }
        }
    }
    Ok(())
}

/// A YAML scalar: strings and lists as JSON (valid YAML), floats always with a dot and a
/// signed exponent where they have one, as YAML 1.1 readers (PyYAML) need to read a float.
fn yaml_float(x: f64) -> String {
    if x == 0.0 {
        return "0.0".into();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.1}");
    }
    if x.abs() >= 1e-4 && x.abs() < 1e15 {
        return format!("{x}");
    }
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} writes an exponent");
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    let exp = if exp.starts_with('-') { exp.to_string() } else { format!("+{exp}") };
    format!("{mantissa}e{exp}")
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn quoted_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", "))
}

/// The model as the engine reads it: a local directory as an absolute path (the job runs from
/// its own directory), a hub id as it is.
fn model_ref(path: &str) -> Result<String> {
    let p = Path::new(path);
    if p.is_dir() {
        Ok(fs_err::canonicalize(p)?.display().to_string())
    } else {
        Ok(path.to_string())
    }
}

/// `rope_scaling = "KIND:FACTOR"` as transformers' `rope_parameters` overrides.
fn rope_override(spec: Option<&str>) -> Result<Option<(String, f64)>> {
    let Some(spec) = spec else { return Ok(None) };
    let (kind, factor) = spec
        .split_once(':')
        .ok_or_else(|| Error::Config(format!("[model] rope_scaling `{spec}` is not KIND:FACTOR")))?;
    let factor: f64 = factor
        .parse()
        .map_err(|_| Error::Config(format!("[model] rope_scaling `{spec}`: `{factor}` is not a number")))?;
    Ok(Some((kind.to_string(), factor)))
}

/// The optimizer steps' warm-up and the scheduler name in transformers' terms.
fn hf_schedule(config: &TrainConfig, steps: usize) -> (&'static str, usize) {
    let warmup = config.optim.warmup(steps);
    let name = match config.optim.schedule {
        crate::optim::Schedule::Cosine => "cosine",
        crate::optim::Schedule::Linear => "linear",
        crate::optim::Schedule::Constant if warmup > 0 => "constant_with_warmup",
        crate::optim::Schedule::Constant => "constant",
    };
    (name, warmup)
}

/// The settings shared by the `Trainer`-based engines (TRL's `SFTConfig`, axolotl's keys are
/// mapped from the same values).
struct HfJob {
    model: String,
    dtype: &'static str,
    rope: Option<(String, f64)>,
    nf4: bool,
    steps: usize,
    gpus: usize,
    sharding: Sharding,
}

fn ds_config(stage: u8) -> String {
    format!(
        "{{\n  \"zero_optimization\": {{\n    \"stage\": {stage},\n    \"overlap_comm\": true,\n    \"contiguous_gradients\": true{}\n  }},\n  \"bf16\": {{\"enabled\": \"auto\"}},\n  \"train_micro_batch_size_per_gpu\": \"auto\",\n  \"gradient_accumulation_steps\": \"auto\",\n  \"gradient_clipping\": \"auto\"\n}}\n",
        if stage == 3 { ",\n    \"stage3_gather_16bit_weights_on_model_save\": true" } else { "" }
    )
}

fn trl_config(config: &TrainConfig, job: &HfJob) -> String {
    let o = &config.optim;
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# TRL job written by `longctx train --export --engine trl` from the training file `{}`",
        config.name
    );
    let _ = writeln!(y, "# (longctx.toml). train.py reads this file; `training` is trl.SFTConfig's arguments.");
    let _ = writeln!(y, "model:");
    let _ = writeln!(y, "  name_or_path: {}", quoted(&job.model));
    let _ = writeln!(y, "  dtype: {}", quoted(job.dtype));
    let _ = writeln!(y, "  attn_implementation: \"sdpa\"");
    match &job.rope {
        Some((kind, factor)) => {
            let _ = writeln!(y, "  rope_scaling: {{rope_type: {}, factor: {}}}", quoted(kind), yaml_float(*factor));
        }
        None => {
            let _ = writeln!(y, "  rope_scaling: null");
        }
    }
    let _ = writeln!(y, "  load_in_4bit: {}", job.nf4);
    match config.lora() {
        Some(l) => {
            let _ = writeln!(y, "lora:  # peft.LoraConfig");
            let _ = writeln!(y, "  r: {}", l.r);
            let _ = writeln!(y, "  lora_alpha: {}", yaml_float(l.alpha));
            let _ = writeln!(y, "  lora_dropout: {}", yaml_float(l.dropout));
            let _ = writeln!(y, "  target_modules: {}", quoted_list(&l.target_modules));
            let _ = writeln!(y, "  use_rslora: {}", l.rslora);
            let _ = writeln!(y, "  bias: \"none\"");
            let _ = writeln!(y, "  task_type: \"CAUSAL_LM\"");
        }
        None => {
            let _ = writeln!(y, "lora: null  # full fine-tuning");
        }
    }
    let _ = writeln!(y, "data:");
    let _ = writeln!(y, "  packs: \"data/packs.jsonl\"");
    let (scheduler, warmup) = hf_schedule(config, job.steps);
    let _ = writeln!(y, "training:");
    let _ = writeln!(y, "  output_dir: \"output\"");
    let _ = writeln!(y, "  per_device_train_batch_size: 1  # one pack of up to {} tokens", config.micro_batch_tokens());
    let _ = writeln!(y, "  gradient_accumulation_steps: {}", o.grad_accum);
    let _ = writeln!(y, "  num_train_epochs: 1  # data/packs.jsonl holds every epoch ({}), in order", o.epochs);
    let _ = writeln!(y, "  max_steps: {}", job.steps);
    let _ = writeln!(y, "  learning_rate: {}", yaml_float(o.lr));
    let _ = writeln!(y, "  lr_scheduler_type: {}", quoted(scheduler));
    let _ = writeln!(y, "  warmup_steps: {warmup}");
    let _ = writeln!(y, "  max_grad_norm: {}", yaml_float(o.clip.unwrap_or(0.0)));
    let _ = writeln!(y, "  optim: \"adamw_torch\"");
    let _ = writeln!(y, "  weight_decay: {}", yaml_float(o.weight_decay));
    let _ = writeln!(y, "  adam_beta1: {}", yaml_float(o.betas.0));
    let _ = writeln!(y, "  adam_beta2: {}", yaml_float(o.betas.1));
    let _ = writeln!(y, "  adam_epsilon: {}", yaml_float(o.eps));
    let _ = writeln!(y, "  seed: {}", o.seed);
    let _ = writeln!(y, "  activation_checkpointing: {}", o.gradient_checkpointing);
    let _ = writeln!(y, "  bf16: {}", job.dtype == "bfloat16");
    let _ = writeln!(y, "  logging_steps: 1");
    let save = if config.output.save_every == 0 { job.steps } else { config.output.save_every };
    let _ = writeln!(y, "  save_strategy: \"steps\"");
    let _ = writeln!(y, "  save_steps: {save}");
    let _ = writeln!(y, "  save_total_limit: {}", config.output.keep_checkpoints.max(1));
    let _ = writeln!(y, "  report_to: \"none\"");
    let _ = writeln!(y, "  remove_unused_columns: false  # the hook reads seq_lens and seq_weights");
    let _ = writeln!(y, "  dataset_kwargs: {{skip_prepare_dataset: true}}  # packed and masked by longctx");
    if let Some(stage) = job.sharding.zero_stage() {
        let _ = writeln!(y, "  deepspeed: \"ds_config.json\"  # ZeRO stage {stage}");
    }
    if job.sharding == Sharding::Fsdp {
        let _ = writeln!(y, "  fsdp: \"full_shard auto_wrap\"");
        let _ = writeln!(y, "  fsdp_config: {{transformer_layer_cls_to_wrap: [\"LlamaDecoderLayer\"]}}");
    }
    y
}

/// What torchtune's Llama builders need of the base model (its config.json).
struct TorchtuneModel {
    vocab_size: u64,
    num_layers: u64,
    num_heads: u64,
    num_kv_heads: u64,
    embed_dim: u64,
    intermediate_dim: u64,
    norm_eps: f64,
    rope_base: f64,
    max_position_embeddings: u64,
    /// Llama 3's RoPE scaling factor (1: none).
    scale_factor: f64,
    tied: bool,
    /// The local model directory (a hub id's download).
    dir: String,
    checkpoint_files: Vec<String>,
}

impl TorchtuneModel {
    /// Reads the model's config.json and refuses what torchtune's `llama3_2` builders cannot
    /// express.
    fn read(config: &TrainConfig, model_dir: &Path) -> Result<Self> {
        let path = model_dir.join("config.json");
        let raw: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(&path)?).map_err(|e| Error::from(e).in_file(&path))?;
        let bad = |m: String| Error::Config(format!("{}: {m}", path.display()));
        let int = |key: &str| {
            raw.get(key).and_then(serde_json::Value::as_u64).ok_or_else(|| bad(format!("no integer `{key}`")))
        };
        if raw.get("model_type").and_then(serde_json::Value::as_str) != Some("llama") {
            return Err(bad(format!(
                "torchtune export covers Llama models (`model_type` \"llama\"), not {}",
                raw.get("model_type").map_or("a model without `model_type`".into(), ToString::to_string)
            )));
        }
        let (embed_dim, num_heads) = (int("hidden_size")?, int("num_attention_heads")?);
        if let Some(h) = raw.get("head_dim").and_then(serde_json::Value::as_u64) {
            if h * num_heads != embed_dim {
                return Err(bad(format!(
                    "head_dim {h} × {num_heads} heads is not hidden_size {embed_dim}; torchtune's builders assume it is"
                )));
            }
        }
        for key in ["attention_bias", "mlp_bias"] {
            if raw.get(key).and_then(serde_json::Value::as_bool) == Some(true) {
                return Err(bad(format!("`{key}` is true; torchtune's Llama builders have no biases")));
            }
        }
        if config.model.rope_scaling.is_some() {
            return Err(Error::Config(
                "[model] rope_scaling: torchtune's Llama builders have no linear, dynamic or YaRN RoPE scaling; export to trl or axolotl".into(),
            ));
        }
        let scale_factor = match raw.get("rope_scaling").filter(|v| !v.is_null()) {
            None => 1.0,
            Some(r) => {
                let kind = r.get("rope_type").or_else(|| r.get("type")).and_then(serde_json::Value::as_str);
                let num = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
                if kind != Some("llama3")
                    || num("low_freq_factor") != Some(1.0)
                    || num("high_freq_factor") != Some(4.0)
                    || num("original_max_position_embeddings") != Some(8192.0)
                {
                    return Err(bad(format!(
                        "rope_scaling {r}: torchtune's builders have only Llama 3's scaling with low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192; export to trl or axolotl"
                    )));
                }
                num("factor").ok_or_else(|| bad("rope_scaling without `factor`".into()))?
            }
        };
        let checkpoint_files = longctx_models::load::weight_files(model_dir)
            .map_err(|e| Error::from(e).in_file(model_dir))?
            .iter()
            .map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .collect();
        Ok(Self {
            vocab_size: int("vocab_size")?,
            num_layers: int("num_hidden_layers")?,
            num_heads,
            num_kv_heads: raw.get("num_key_value_heads").and_then(serde_json::Value::as_u64).unwrap_or(num_heads),
            embed_dim,
            intermediate_dim: int("intermediate_size")?,
            norm_eps: raw.get("rms_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-5),
            rope_base: raw.get("rope_theta").and_then(serde_json::Value::as_f64).unwrap_or(10_000.0),
            max_position_embeddings: int("max_position_embeddings")?,
            scale_factor,
            tied: raw.get("tie_word_embeddings").and_then(serde_json::Value::as_bool).unwrap_or(false),
            dir: fs_err::canonicalize(model_dir)?.display().to_string(),
            checkpoint_files,
        })
    }
}

/// LoRA targets in torchtune's terms: attention modules, and whether the MLP is adapted (all
/// three projections or none).
fn torchtune_targets(targets: &[String]) -> Result<(Vec<String>, bool)> {
    let mut attn = Vec::new();
    let mut mlp = 0;
    for t in targets {
        match t.as_str() {
            "q_proj" | "k_proj" | "v_proj" => attn.push(t.clone()),
            "o_proj" => attn.push("output_proj".into()),
            "gate_proj" | "up_proj" | "down_proj" => mlp += 1,
            other => return Err(Error::Config(format!("[lora] target module `{other}` has no torchtune name"))),
        }
    }
    if mlp != 0 && mlp != 3 {
        return Err(Error::Config(
            "[lora] target_modules: torchtune adapts the MLP's three projections together (apply_lora_to_mlp); list gate_proj, up_proj and down_proj, or none of them".into(),
        ));
    }
    Ok((attn, mlp == 3))
}

fn torchtune_recipe(config: &TrainConfig, gpus: usize) -> String {
    let kind = if config.lora().is_some() { "lora_finetune" } else { "full_finetune" };
    let place = if gpus > 1 { "distributed" } else { "single_device" };
    format!("{kind}_{place}")
}

/// The `model:` section of torchtune's config: its `llama3_2` builder with this model's
/// dimensions (LoRA or not).
fn torchtune_model(y: &mut String, config: &TrainConfig, job: &HfJob, m: &TorchtuneModel) {
    let lora = config.lora();
    let _ = writeln!(*y, "model:");
    let max_seq_len = m.max_position_embeddings.max(config.micro_batch_tokens() as u64);
    match &lora {
        Some(l) => {
            let (attn, mlp) = torchtune_targets(&l.target_modules).expect("checked before");
            let _ = writeln!(*y, "  _component_: torchtune.models.llama3_2.lora_llama3_2");
            let _ = writeln!(*y, "  lora_attn_modules: {}", quoted_list(&attn));
            let _ = writeln!(*y, "  apply_lora_to_mlp: {}", if mlp { "True" } else { "False" });
            let _ = writeln!(*y, "  apply_lora_to_output: False");
            let _ = writeln!(*y, "  lora_rank: {}", l.r);
            let _ = writeln!(*y, "  lora_alpha: {}", yaml_float(l.alpha));
            let _ = writeln!(*y, "  lora_dropout: {}", yaml_float(l.dropout));
            let _ = writeln!(
                y,
                "  quantize_base: {}  # NF4 base (QLoRA), torchao's",
                if job.nf4 { "True" } else { "False" }
            );
        }
        None => {
            let _ = writeln!(*y, "  _component_: torchtune.models.llama3_2.llama3_2");
        }
    }
    let _ = writeln!(*y, "  vocab_size: {}", m.vocab_size);
    let _ = writeln!(*y, "  num_layers: {}", m.num_layers);
    let _ = writeln!(*y, "  num_heads: {}", m.num_heads);
    let _ = writeln!(*y, "  num_kv_heads: {}", m.num_kv_heads);
    let _ = writeln!(*y, "  embed_dim: {}", m.embed_dim);
    let _ = writeln!(*y, "  max_seq_len: {max_seq_len}");
    let _ = writeln!(*y, "  intermediate_dim: {}", m.intermediate_dim);
    let _ = writeln!(*y, "  norm_eps: {}", yaml_float(m.norm_eps));
    let _ = writeln!(*y, "  rope_base: {}", yaml_float(m.rope_base));
    let _ = writeln!(*y, "  scale_factor: {}  # Llama 3's RoPE scaling (1: none)", yaml_float(m.scale_factor));
    let _ = writeln!(*y, "  tie_word_embeddings: {}", if m.tied { "True" } else { "False" });
}

fn torchtune_config(config: &TrainConfig, job: &HfJob, m: &TorchtuneModel) -> String {
    let o = &config.optim;
    let lora = config.lora();
    let mut y = String::new();
    let recipe = torchtune_recipe(config, job.gpus);
    let _ =
        writeln!(y, "# torchtune job written by `longctx train --export --engine torchtune` from the training file");
    let _ = writeln!(y, "# `{}` (longctx.toml), for torchtune's stock recipe {recipe} (launch.sh).", config.name);
    let _ = writeln!(y, "output_dir: output");
    torchtune_model(&mut y, config, job, m);
    let _ = writeln!(y, "tokenizer:  # the data is tokenized already");
    let _ = writeln!(y, "  _component_: longctx_torchtune.pretokenized");
    let _ = writeln!(y, "checkpointer:");
    let _ = writeln!(y, "  _component_: torchtune.training.FullModelHFCheckpointer");
    let _ = writeln!(y, "  checkpoint_dir: {}", quoted(&m.dir));
    let _ = writeln!(y, "  checkpoint_files: {}", quoted_list(&m.checkpoint_files));
    let _ = writeln!(y, "  recipe_checkpoint: null");
    let _ = writeln!(y, "  output_dir: ${{output_dir}}");
    let _ = writeln!(y, "  model_type: LLAMA3_2");
    let _ = writeln!(y, "resume_from_checkpoint: False");
    if lora.is_some() {
        let _ = writeln!(y, "save_adapter_weights_only: True");
    }
    let _ = writeln!(y, "dataset:");
    let _ = writeln!(y, "  _component_: longctx_torchtune.packs");
    let _ = writeln!(y, "  path: data/packs.jsonl");
    let _ = writeln!(y, "collate_fn: longctx_torchtune.collate_packs");
    let _ = writeln!(y, "seed: {}", o.seed);
    let _ = writeln!(y, "shuffle: False  # data/packs.jsonl holds every epoch ({}) in longctx's order", o.epochs);
    let _ = writeln!(y, "batch_size: 1  # one pack of up to {} tokens", config.micro_batch_tokens());
    let _ = writeln!(y, "optimizer:");
    let _ = writeln!(y, "  _component_: torch.optim.AdamW");
    let _ = writeln!(y, "  lr: {}", yaml_float(o.lr));
    let _ = writeln!(y, "  betas: [{}, {}]", yaml_float(o.betas.0), yaml_float(o.betas.1));
    let _ = writeln!(y, "  eps: {}", yaml_float(o.eps));
    let _ = writeln!(y, "  weight_decay: {}", yaml_float(o.weight_decay));
    let (scheduler, warmup) = hf_schedule(config, job.steps);
    let kind = scheduler.trim_end_matches("_with_warmup");
    let _ = writeln!(y, "lr_scheduler:");
    let _ = writeln!(y, "  _component_: longctx_torchtune.schedule");
    let _ = writeln!(y, "  kind: {kind}");
    let _ = writeln!(y, "  num_warmup_steps: {warmup}");
    let _ = writeln!(y, "loss:  # LongAlign's weighting (longctx_torchtune.py)");
    let _ = writeln!(y, "  _component_: longctx_torchtune.WeightedLoss");
    let _ = writeln!(y, "epochs: 1");
    let _ = writeln!(y, "max_steps_per_epoch: {}", job.steps);
    let _ = writeln!(y, "gradient_accumulation_steps: {}", o.grad_accum);
    match o.clip {
        Some(c) if c > 0.0 => {
            let _ = writeln!(y, "clip_grad_norm: {}", yaml_float(c));
        }
        _ => {
            let _ = writeln!(y, "clip_grad_norm: null");
        }
    }
    let _ = writeln!(y, "compile: False");
    if lora.is_none() {
        let _ = writeln!(y, "optimizer_in_bwd: False");
    }
    if job.gpus > 1 {
        // FSDP2 always; without resharding after the forward pass it keeps whole weights
        // between forward and backward (ZeRO-2's trade).
        let reshard = !matches!(job.sharding, Sharding::Zero1 | Sharding::Zero2);
        let _ = writeln!(y, "fsdp_reshard_after_forward: {}", if reshard { "True" } else { "False" });
    }
    let _ = writeln!(y, "metric_logger:");
    let _ = writeln!(y, "  _component_: torchtune.training.metric_logging.DiskLogger");
    let _ = writeln!(y, "  log_dir: ${{output_dir}}/logs");
    let _ = writeln!(y, "log_every_n_steps: 1");
    let _ = writeln!(y, "log_peak_memory_stats: False");
    let _ = writeln!(y, "device: cuda");
    let _ = writeln!(y, "dtype: {}", if job.dtype == "bfloat16" { "bf16" } else { "fp32" });
    let _ = writeln!(y, "enable_activation_checkpointing: {}", if o.gradient_checkpointing { "True" } else { "False" });
    let _ = writeln!(y, "enable_activation_offloading: False");
    let _ = writeln!(y, "profiler:");
    let _ = writeln!(y, "  _component_: torchtune.training.setup_torch_profiler");
    let _ = writeln!(y, "  enabled: False");
    y
}

fn launch_tune(config: &TrainConfig, job: &HfJob) -> String {
    let recipe = torchtune_recipe(config, job.gpus);
    let nproc = if job.gpus > 1 { format!("--nproc_per_node {} ", job.gpus) } else { String::new() };
    format!(
        "#!/usr/bin/env bash\n# Runs the job with torchtune's stock recipe {recipe} on {gpus} GPU(s) (written by longctx).\n# Extra arguments are config overrides, e.g. device=cpu or batch_size=1.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\nexport PYTHONPATH=\"$PWD${{PYTHONPATH:+:$PYTHONPATH}}\"\nexec tune run {nproc}{recipe} --config config.yaml \"$@\"\n",
        gpus = job.gpus
    )
}

fn torchtune_readme(config: &TrainConfig, job: &HfJob, summary: &ExportSummary) -> String {
    let recipe = torchtune_recipe(config, job.gpus);
    format!(
        "# {name}: a torchtune job written by longctx\n\n\
`longctx train longctx.toml --export DIR --engine torchtune` wrote this directory from the training\n\
file `longctx.toml` (copied here). Run it on a machine with {gpus} GPU(s):\n\n\
    pip install -r requirements.txt\n    ./launch.sh\n\n\
`launch.sh` runs torchtune's own recipe `{recipe}` (`tune run`{torchrun}) with `config.yaml`.\n\
The adapter lands in `output/epoch_0/` in PEFT's format (`adapter_config.json`,\n\
`adapter_model.safetensors`); evaluate it with longctx (`longctx run` with `adapter = \"…\"` in\n\
an experiment's `[model]`, or `longctx loss --model {model} --adapter output/epoch_0 --data …`).\n\n\
## What is here\n\n\
- `data/packs.jsonl`: {packs} packs ({fillers} of them weight-0 fillers) for {steps} optimizer steps — the\n  conversations rendered with the model's chat template, tokenized, masked and packed by longctx\n  exactly as `longctx train` trains on them; `labels` (−100: no loss), `position_ids` (0 at each\n  sequence's start; the mask is block-causal), `seq_lens`, `seq_weights` (the loss weight of each\n  sequence's target tokens over the global step of {per_step} packs), `step_labels`.\n\
- `config.yaml`: the model (torchtune's `llama3_2` builder with this model's dimensions, weights\n  read from its Hugging Face checkpoint), LoRA, AdamW, the schedule, gradient accumulation,\n  clipping and checkpointing mapped from `longctx.toml`; the data is read in file order.\n\
- `longctx_torchtune.py`: the dataset and collate function of the packs, the schedules, and the\n  loss hook `WeightedLoss`. The recipes call `loss_fn(logits, labels)`, multiply it by the\n  micro-batch's label count and divide the step's gradient by the step's label count; the hook\n  returns `Σ w · ℓ` times the step's label count over the micro-batch's, so a step's gradient and\n  logged loss are those of `Σ w · ℓ` over the step. It reads the weights `collate_packs` kept for\n  the batch (the recipes load data in the training process).\n\n\
## Differences from `longctx train`\n\n\
- LoRA's A matrices start from torchtune's random initialization, not longctx's (B is zero in both).\n\
- Several GPUs always run FSDP2 (torchtune has no DeepSpeed); `sharding = \"zero1\"`/`\"zero2\"`\n  maps to `fsdp_reshard_after_forward: False`.\n\
- With several GPUs a step holds `gpus × grad_accum` packs (the global batch grows with the GPUs).\n",
        name = config.name,
        gpus = job.gpus,
        torchrun = if job.gpus > 1 { ", torchrun underneath" } else { "" },
        model = job.model,
        packs = summary.packs,
        fillers = summary.filler_packs,
        steps = summary.steps,
        per_step = config.optim.grad_accum * job.gpus,
    )
}

fn axolotl_config(config: &TrainConfig, job: &HfJob) -> String {
    let o = &config.optim;
    let mut y = String::new();
    let _ = writeln!(y, "# axolotl job written by `longctx train --export --engine axolotl` from the training file");
    let _ = writeln!(
        y,
        "# `{}` (longctx.toml). The plugin longctx_axolotl.LongctxPlugin feeds longctx's packs",
        config.name
    );
    let _ = writeln!(y, "# (data/packs.jsonl) and LongAlign's loss weighting; `datasets` is not read.");
    let _ = writeln!(y, "base_model: {}", quoted(&job.model));
    let _ = writeln!(y, "plugins:");
    let _ = writeln!(y, "  - longctx_axolotl.LongctxPlugin");
    let _ = writeln!(y, "datasets:");
    let _ = writeln!(y, "  - path: data/packs.jsonl");
    let _ = writeln!(y, "    ds_type: json");
    let _ = writeln!(y, "sequence_len: {}", config.micro_batch_tokens());
    let _ = writeln!(y, "sample_packing: false  # packed by longctx");
    let _ = writeln!(y, "micro_batch_size: 1  # one pack of up to {} tokens", config.micro_batch_tokens());
    let _ = writeln!(y, "gradient_accumulation_steps: {}", o.grad_accum);
    let _ = writeln!(y, "num_epochs: 1  # data/packs.jsonl holds every epoch ({}), in order", o.epochs);
    let _ = writeln!(y, "max_steps: {}", job.steps);
    match config.lora() {
        Some(l) => {
            let _ = writeln!(y, "adapter: {}", if job.nf4 { "qlora" } else { "lora" });
            if job.nf4 {
                let _ = writeln!(y, "load_in_4bit: true");
            }
            let _ = writeln!(y, "lora_r: {}", l.r);
            let _ = writeln!(y, "lora_alpha: {}", yaml_float(l.alpha));
            let _ = writeln!(y, "lora_dropout: {}", yaml_float(l.dropout));
            let _ = writeln!(y, "lora_target_modules: {}", quoted_list(&l.target_modules));
            let _ = writeln!(y, "peft_use_rslora: {}", l.rslora);
        }
        None => {
            let _ = writeln!(y, "# full fine-tuning: no adapter");
        }
    }
    if let Some((kind, factor)) = &job.rope {
        let _ = writeln!(y, "overrides_of_model_config:");
        let _ = writeln!(y, "  rope_parameters: {{rope_type: {}, factor: {}}}", quoted(kind), yaml_float(*factor));
    }
    let (scheduler, warmup) = hf_schedule(config, job.steps);
    let _ = writeln!(y, "optimizer: adamw_torch");
    let _ = writeln!(y, "learning_rate: {}", yaml_float(o.lr));
    let _ = writeln!(y, "lr_scheduler: {scheduler}");
    let _ = writeln!(y, "warmup_steps: {warmup}");
    let _ = writeln!(y, "max_grad_norm: {}", yaml_float(o.clip.unwrap_or(0.0)));
    let _ = writeln!(y, "weight_decay: {}", yaml_float(o.weight_decay));
    let _ = writeln!(y, "adam_beta1: {}", yaml_float(o.betas.0));
    let _ = writeln!(y, "adam_beta2: {}", yaml_float(o.betas.1));
    let _ = writeln!(y, "adam_epsilon: {}", yaml_float(o.eps));
    let _ = writeln!(y, "seed: {}", o.seed);
    let _ = writeln!(y, "gradient_checkpointing: {}", o.gradient_checkpointing);
    let _ = writeln!(y, "bf16: {}", job.dtype == "bfloat16");
    let _ = writeln!(y, "fp16: false");
    let _ = writeln!(y, "tf32: false");
    let _ = writeln!(y, "sdp_attention: true");
    let _ = writeln!(y, "output_dir: ./output");
    let save = if config.output.save_every == 0 { job.steps } else { config.output.save_every };
    let _ = writeln!(y, "save_strategy: steps");
    let _ = writeln!(y, "save_steps: {save}");
    let _ = writeln!(y, "save_total_limit: {}", config.output.keep_checkpoints.max(1));
    let _ = writeln!(y, "logging_steps: 1");
    let _ = writeln!(y, "remove_unused_columns: false  # the hook reads seq_lens and seq_weights");
    if job.sharding.zero_stage().is_some() {
        let _ = writeln!(y, "deepspeed: ds_config.json");
    }
    if job.sharding == Sharding::Fsdp {
        let _ = writeln!(y, "fsdp_version: 2");
        let _ = writeln!(y, "fsdp_config:");
        let _ = writeln!(y, "  reshard_after_forward: true");
        let _ = writeln!(y, "  auto_wrap_policy: TRANSFORMER_BASED_WRAP");
        let _ = writeln!(y, "  transformer_layer_cls_to_wrap: LlamaDecoderLayer");
    }
    y
}

fn axolotl_readme(config: &TrainConfig, job: &HfJob, summary: &ExportSummary) -> String {
    format!(
        "# {name}: an axolotl job written by longctx\n\n\
`longctx train longctx.toml --export DIR --engine axolotl` wrote this directory from the training\n\
file `longctx.toml` (copied here). Run it on a machine with {gpus} GPU(s):\n\n\
    pip install -r requirements.txt{extra}\n    ./launch.sh\n\n\
The adapter (or, for full fine-tuning, the model) lands in `output/`; evaluate it with longctx\n\
(`longctx run` with `adapter = \"…/output\"` in an experiment's `[model]`, or\n\
`longctx loss --model {model} --adapter output --data …`).\n\n\
## What is here\n\n\
- `data/packs.jsonl`: {packs} packs ({fillers} of them weight-0 fillers) for {steps} optimizer steps — the\n  conversations rendered with the model's chat template, tokenized, masked and packed by longctx\n  exactly as `longctx train` trains on them; `labels` (−100: no loss), `position_ids` (0 at each\n  sequence's start), `seq_lens`, `seq_weights` (the loss weight of each sequence's target tokens\n  over the global step of {per_step} packs).\n\
- `config.yml`: the model, LoRA, AdamW, schedule, accumulation, clipping and checkpointing\n  mapped from `longctx.toml`{sharding}.\n\
- `longctx_axolotl.py`: the plugin. It gives axolotl the packs as the training set (axolotl's\n  tokenization and sample packing are skipped; `datasets` in config.yml is not read), a\n  collator of one pack per micro-batch and GPU, and axolotl's trainer with the loss hook of\n  `longctx_hooks.py` in front: `compute_loss` runs the LM head only where a token is predicted\n  and returns `Σ w · ℓ` times the number of processes, marked as already scaled for gradient\n  accumulation, so a step's gradient and logged loss are those of `Σ w · ℓ` over the step; the\n  sampler keeps the file order.\n\
- `launch.sh`: `accelerate launch -m axolotl.cli.train config.yml` on {gpus} GPU(s).\n\n\
## Differences from `longctx train`\n\n\
- LoRA's A matrices start from peft's random initialization, not longctx's (B is zero in both).\n\
- transformers' AdamW leaves biases and norm weights out of weight decay; longctx decays every\n  trained tensor (the same for LoRA).\n\
- With several GPUs a step holds `gpus × grad_accum` packs (the global batch grows with the GPUs).\n{dynamic}",
        name = config.name,
        gpus = job.gpus,
        dynamic = dynamic_note(job),
        extra = if job.nf4 { "  # bitsandbytes comes with axolotl (QLoRA)" } else { "" },
        model = job.model,
        packs = summary.packs,
        fillers = summary.filler_packs,
        steps = summary.steps,
        per_step = config.optim.grad_accum * job.gpus,
        sharding = match job.sharding {
            Sharding::None => String::new(),
            Sharding::Fsdp => ", FSDP2 with full sharding".into(),
            s => format!(", DeepSpeed ZeRO stage {} (`ds_config.json`)", s.zero_stage().unwrap_or(0)),
        },
    )
}

fn launch_accelerate(job: &HfJob, entry: &str) -> String {
    format!(
        "#!/usr/bin/env bash\n# Runs the job on {gpus} GPU(s) of this machine (written by longctx). Extra arguments go to\n# `accelerate launch` before the script, e.g. --num_machines/--machine_rank/--main_process_ip\n# for several machines.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\nexec accelerate launch --num_processes {gpus} --num_machines 1 --mixed_precision no --dynamo_backend no \"$@\" {entry}\n",
        gpus = job.gpus
    )
}

/// The README line on dynamic NTK RoPE, when the job overrides RoPE with it.
fn dynamic_note(job: &HfJob) -> &'static str {
    if job.rope.as_ref().is_some_and(|(kind, _)| kind == "dynamic") {
        "- Dynamic NTK RoPE: transformers keeps the largest scale it has seen in a process (a sequence\n  packed with or after a longer one runs at the longer one's scale); longctx scales each sequence by its own length.\n"
    } else {
        ""
    }
}

fn trl_readme(config: &TrainConfig, job: &HfJob, summary: &ExportSummary) -> String {
    let loss = match config.data.loss {
        crate::loss::LossKind::LongAlign => {
            "longalign (LongAlign's loss weighting: every sequence of a step weighs the same)"
        }
        crate::loss::LossKind::TokenMean => "token-mean (the mean over the step's target tokens)",
    };
    format!(
        "# {name}: a TRL job written by longctx\n\n\
`longctx train longctx.toml --export DIR --engine trl` wrote this directory from the training file\n\
`longctx.toml` (copied here). Run it on a machine with {gpus} GPU(s):\n\n\
    pip install -r requirements.txt{extra}\n    ./launch.sh\n\n\
The adapter (or, for full fine-tuning, the model) lands in `output/`; evaluate it with longctx:\n\
`longctx run EXPERIMENT.toml` with `adapter = \"…/output\"` in its `[model]`, or\n\
`longctx loss --model {model} --adapter output --data …`.\n\n\
## What is here\n\n\
- `data/packs.jsonl`: {packs} packs ({fillers} of them weight-0 fillers) for {steps} optimizer steps — the\n  conversations rendered with the model's chat template, tokenized, masked (assistant tokens only),\n  batched (`{batching}`) and packed by longctx exactly as `longctx train` trains on them. One line is\n  one micro-batch on one GPU: `input_ids`, `labels` (−100: no loss), `position_ids` (0 at each\n  sequence's start: no token attends across a boundary), `seq_lens`, `seq_weights` (the loss weight\n  of each sequence's target tokens, over the global step of {per_step} packs).\n\
- `config.yaml`: the model, LoRA (`peft.LoraConfig`) and `trl.SFTConfig` settings mapped from\n  `longctx.toml`. `training.gradient_accumulation_steps` × GPUs packs make one step; the data is\n  read in file order (each epoch was shuffled by longctx), so changing the GPU count means exporting\n  again (`[distributed] gpus` or `--gpus`).\n\
- `train.py`: loads the model and the packs and runs `trl.SFTTrainer` with the loss hook.\n\
- `longctx_hooks.py`: the hook. None of the engines weighs a loss per token: the hook's\n  `compute_loss` runs the LM head only where a token is predicted (`logits_to_keep`) and returns\n  `Σ w · ℓ` over the pack's target tokens, times the number of processes (DDP/DeepSpeed average\n  gradients over them) and marked as already scaled for gradient accumulation, so one step's\n  gradient is that of `Σ w · ℓ` over the whole step; its sampler keeps the file order.\n\
- `launch.sh`: `accelerate launch` on {gpus} GPU(s){sharding}.\n\n\
Loss: {loss}.\n\n\
## Differences from `longctx train`\n\n\
- LoRA's A matrices start from peft's random initialization, not longctx's (B is zero in both).\n\
- transformers' AdamW leaves biases and norm weights out of weight decay; longctx decays every\n  trained tensor (the same for LoRA, which trains no bias or norm).\n\
- With several GPUs a step holds `gpus × grad_accum` packs (the global batch grows with the GPUs).\n{dynamic}",
        name = config.name,
        gpus = job.gpus,
        dynamic = dynamic_note(job),
        extra = if job.nf4 { "  # + bitsandbytes for the NF4 base (QLoRA)" } else { "" },
        model = job.model,
        packs = summary.packs,
        fillers = summary.filler_packs,
        steps = summary.steps,
        batching = serde_json::to_value(config.data.batching).map(|v| v.as_str().unwrap_or("").to_string()).unwrap_or_default(),
        per_step = config.optim.grad_accum * job.gpus,
        sharding = match job.sharding {
            Sharding::None => String::new(),
            Sharding::Fsdp => " with FSDP (full sharding)".into(),
            s => format!(" with DeepSpeed ZeRO stage {} (`ds_config.json`)", s.zero_stage().unwrap_or(0)),
        },
    )
}

/// Writes the job of `config` for `engine` into `dir` (which must not exist or be empty): reads
/// the model's tokenizer and chat template (not its weights) and the data, as `longctx train`.
pub fn export(
    config: &TrainConfig,
    config_text: &str,
    dir: &Path,
    engine: Engine,
    max_steps: Option<usize>,
) -> Result<(ExportSummary, crate::data::DataSummary)> {
    check(config, engine)?;
    if dir.exists() && fs_err::read_dir(dir)?.next().is_some() {
        return Err(Error::Config(format!(
            "{}: the export directory is not empty; give a new directory",
            dir.display()
        )));
    }
    let path = &config.model.path;
    if engine == Engine::Torchtune && !Path::new(path).is_dir() {
        return Err(Error::Config(format!(
            "{path}: torchtune reads a local checkpoint; download the model (e.g. `hf download {path} --local-dir DIR`) and give its directory"
        )));
    }
    // Only the configuration and tokenizer: the engine loads the weights itself.
    let model_dir = longctx_models::load::resolve_model_files(path).map_err(|e| Error::from(e).in_file(path))?;
    let (tokenizer, template) =
        longctx_models::load::load_tokenizer(&model_dir).map_err(|e| Error::from(e).in_file(path))?;
    let template = template.ok_or_else(|| {
        Error::Config(format!("{path}: the model has no chat template (tokenizer_config.json `chat_template`)"))
    })?;
    let (data, data_summary) = crate::trainer::load_data(config, &tokenizer, &template)?;
    Ok((write_job(config, config_text, &data, &model_dir, dir, engine, max_steps)?, data_summary))
}

/// The files of `engine`'s job besides the packs and the training file.
fn engine_files(
    config: &TrainConfig,
    job: &HfJob,
    torchtune: Option<&TorchtuneModel>,
    summary: &ExportSummary,
) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    match summary.engine {
        Engine::Trl => {
            files.push(("config.yaml".into(), trl_config(config, job)));
            files.push(("train.py".into(), TRL_TRAIN.into()));
            files.push(("longctx_hooks.py".into(), HF_HOOKS.into()));
            files.push(("launch.sh".into(), launch_accelerate(job, "train.py config.yaml")));
            let mut req = TRL_REQUIREMENTS.to_string();
            if job.nf4 {
                req.push_str("bitsandbytes>=0.45\n");
            }
            if job.sharding.zero_stage().is_some() {
                req.push_str("deepspeed==0.19.8\n");
            }
            files.push(("requirements.txt".into(), req));
            if let Some(stage) = job.sharding.zero_stage() {
                files.push(("ds_config.json".into(), ds_config(stage)));
            }
            files.push(("README.md".into(), trl_readme(config, job, summary)));
        }
        Engine::Torchtune => {
            let model = torchtune.expect("read for torchtune");
            files.push(("config.yaml".into(), torchtune_config(config, job, model)));
            files.push(("longctx_torchtune.py".into(), TORCHTUNE_HOOKS.into()));
            files.push(("launch.sh".into(), launch_tune(config, job)));
            let mut req = TORCHTUNE_REQUIREMENTS.to_string();
            if job.nf4 {
                req.push_str("# quantize_base (QLoRA) uses torchao's NF4, installed above\n");
            }
            files.push(("requirements.txt".into(), req));
            files.push(("README.md".into(), torchtune_readme(config, job, summary)));
        }
        Engine::Axolotl => {
            files.push(("config.yml".into(), axolotl_config(config, job)));
            files.push(("longctx_axolotl.py".into(), AXOLOTL_PLUGIN.into()));
            files.push(("longctx_hooks.py".into(), HF_HOOKS.into()));
            files.push(("launch.sh".into(), launch_accelerate(job, "-m axolotl.cli.train config.yml")));
            let mut req = AXOLOTL_REQUIREMENTS.to_string();
            if job.sharding.zero_stage().is_some() {
                req.push_str("deepspeed==0.19.8\n");
            }
            files.push(("requirements.txt".into(), req));
            if let Some(stage) = job.sharding.zero_stage() {
                files.push(("ds_config.json".into(), ds_config(stage)));
            }
            files.push(("README.md".into(), axolotl_readme(config, job, summary)));
        }
    }
    files
}

/// Writes the job of `config` for `engine` into `dir` (checked by [`export`]: allowed, and new
/// or empty), with `data` encoded by the model's tokenizer and chat template.
fn write_job(
    config: &TrainConfig,
    config_text: &str,
    data: &[Encoded],
    model_dir: &Path,
    dir: &Path,
    engine: Engine,
    max_steps: Option<usize>,
) -> Result<ExportSummary> {
    let torchtune = if engine == Engine::Torchtune { Some(TorchtuneModel::read(config, model_dir)?) } else { None };
    let dist = config.distributed.clone().unwrap_or_default();
    let gpus = dist.gpus;
    let sharding: Sharding = dist.sharding.parse().map_err(Error::Config)?;
    if data.is_empty() {
        return Err(Error::Data("no conversation is left to train on".into()));
    }
    let rows = packs(config, data, gpus, max_steps.or(config.optim.max_steps));
    let steps = rows.last().map_or(0, |r| r.step + 1);
    let fillers = rows.iter().filter(|r| r.seq_weights.iter().all(|&w| w == 0.0)).count();
    fs_err::create_dir_all(dir.join("data"))?;
    let mut jsonl = String::new();
    for row in &rows {
        jsonl.push_str(&serde_json::to_string(row)?);
        jsonl.push('\n');
    }
    let mut files: Vec<(String, String)> =
        vec![("data/packs.jsonl".into(), jsonl), ("longctx.toml".into(), config_text.into())];
    let nf4 = config.lora().is_some_and(|l| l.base_quant.as_deref() == Some("nf4"));
    let job = HfJob {
        model: model_ref(&config.model.path)?,
        dtype: if config.model.dtype.as_deref() == Some("bf16") { "bfloat16" } else { "float32" },
        rope: rope_override(config.model.rope_scaling.as_deref())?,
        nf4,
        steps,
        gpus,
        sharding,
    };
    let mut summary = ExportSummary {
        dir: dir.to_path_buf(),
        engine,
        steps,
        packs: rows.len(),
        filler_packs: fillers,
        gpus,
        files: Vec::new(),
        launch: format!("{}/launch.sh", dir.display()),
    };
    files.extend(engine_files(config, &job, torchtune.as_ref(), &summary));
    for (name, text) in &files {
        let path = dir.join(name);
        fs_err::write(&path, text)?;
        if Path::new(name).extension().is_some_and(|e| e == "sh") {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    summary.files = files.into_iter().map(|(n, _)| n).collect();
    summary.files.sort();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_floats_read_as_floats_in_yaml_1_1() {
        assert_eq!(yaml_float(1e-8), "1.0e-8");
        assert_eq!(yaml_float(2e-4), "0.0002");
        assert_eq!(yaml_float(2.5e-5), "2.5e-5");
        assert_eq!(yaml_float(32.0), "32.0");
        assert_eq!(yaml_float(0.999), "0.999");
        assert_eq!(yaml_float(0.0), "0.0");
        assert_eq!(yaml_float(1e20), "1.0e+20");
    }

    fn encoded(lens: &[usize]) -> Vec<Encoded> {
        lens.iter()
            .enumerate()
            .map(|(line, &n)| Encoded {
                ids: (0..n as u32).collect(),
                targets: (0..n).map(|t| t >= n / 2).collect(),
                line: line + 1,
                truncated: false,
            })
            .collect()
    }

    #[test]
    fn packs_make_whole_steps_whose_weights_sum_to_one() {
        let text = "name = \"t\"\n[model]\npath = \"m\"\n[data]\npath = \"d.jsonl\"\nmax_seq_len = 40\n[optim]\ngrad_accum = 3\nepochs = 2\nmicro_batch_tokens = 60\n";
        let config = TrainConfig::parse(text).unwrap();
        let data = encoded(&[10, 40, 25, 7, 33, 12, 18, 40, 3, 21, 30]);
        for gpus in [1, 2, 4] {
            let rows = packs(&config, &data, gpus, None);
            let steps = rows.last().unwrap().step + 1;
            assert_eq!(rows.len(), steps * 3 * gpus, "{gpus} GPUs: every step holds gpus × grad_accum packs");
            for s in 0..steps {
                let step: Vec<&PackRow> = rows.iter().filter(|r| r.step == s).collect();
                assert!(step.iter().all(|r| r.input_ids.len() <= 60 && !r.input_ids.is_empty()));
                let total: f64 = step
                    .iter()
                    .flat_map(|r| {
                        let mut start = 0;
                        r.seq_lens.iter().zip(&r.seq_weights).map(move |(&n, &w)| {
                            let targets = r.labels[start..start + n].iter().filter(|&&l| l != -100).count();
                            start += n;
                            w * targets as f64
                        })
                    })
                    .sum();
                assert!((total - 1.0).abs() < 1e-12, "{gpus} GPUs, step {s}: weights sum to {total}");
            }
            // Every sequence of both epochs is there once per epoch (fillers aside).
            let real: usize =
                rows.iter().filter(|r| r.seq_weights.iter().any(|&w| w > 0.0)).map(|r| r.seq_lens.len()).sum();
            assert_eq!(real, 2 * data.len());
            // Positions restart with each sequence.
            for r in &rows {
                assert_eq!(r.position_ids.iter().filter(|&&p| p == 0).count(), r.seq_lens.len());
            }
        }
        assert_eq!(packs(&config, &data, 1, Some(2)).last().unwrap().step, 1);
    }

    #[test]
    fn engines_and_shardings_parse() {
        assert_eq!("trl".parse::<Engine>(), Ok(Engine::Trl));
        assert!("megatron".parse::<Engine>().unwrap_err().contains("trl, axolotl or torchtune"));
        assert_eq!("zero3".parse::<Sharding>().unwrap().zero_stage(), Some(3));
        assert!("zero4".parse::<Sharding>().is_err());
    }
}
