//! The training run of `longctx train`: the base model (LoRA over frozen weights, or every
//! weight), the data, the plan of optimizer steps, checkpoints and an exact resume.
//!
//! ```text
//! <output_dir>/<name>/config.toml      the training file as given
//! <output_dir>/<name>/run.json         status, data summary, steps, config hash, times
//! <output_dir>/<name>/metrics.jsonl    one line per optimizer step: step, epoch, loss, lr,
//!                                      grad_norm, tokens, target_tokens, seconds
//! <output_dir>/<name>/checkpoints/step-<N>/   trainable.safetensors, optimizer.safetensors,
//!                                      state.json (written last: a checkpoint without it is
//!                                      incomplete and ignored)
//! <output_dir>/<name>/adapter/         the LoRA adapter in PEFT's format (LoRA runs)
//! <output_dir>/<name>/model/           a Hugging Face model directory (full fine-tuning)
//! ```
//!
//! Everything random — data order, LoRA's initialization, dropout masks — derives from the
//! seed and the step, so a run resumed from its last checkpoint (after a `kill -9`) ends with
//! the same weights as one that was never interrupted.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use longctx_models::chat_template::ChatTemplate;
use longctx_models::gguf::load_gguf_with;
use longctx_models::llama::{CausalLm, Llama, LlamaHfConfig, Lora, LoraDropout, Part};
use longctx_models::load::{load_hf_dir, load_tokenizer, resolve_model, weight_files};
use longctx_models::lora::{tensor_names, Adapter, LoraConfig};
use longctx_models::tokenizer::HfTokenizer;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{plan_steps, Step};
use crate::config::{LoraSection, TrainConfig};
use crate::data::{prepare, read_jsonl, DataSummary, Encoded};
use crate::optim::{clip_grad_norm, AdamW};
use crate::step::{forward_backward, Grads, Packed, StepOptions};
use crate::{Error, Result};

/// Version of `run.json`, `state.json` and the metrics lines.
pub const SCHEMA_VERSION: u32 = 1;

/// What `longctx train` takes besides the training file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainOptions {
    /// Stop after this many optimizer steps (the schedule spans them).
    pub max_steps: Option<usize>,
    /// Continue the run in the output directory from its last checkpoint.
    pub resume: bool,
    /// Where run directories go (overrides the file's `output_dir`).
    pub output_dir: Option<PathBuf>,
    /// Train even when the memory plan says the run will not fit.
    pub skip_memory_check: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The final weights: the adapter or model directory (none when interrupted).
    pub output: Option<PathBuf>,
    /// Steps done in all sessions.
    pub steps_done: usize,
    /// Steps of the run.
    pub total_steps: usize,
    /// The last step's loss.
    pub last_loss: Option<f64>,
    /// The data.
    pub data: DataSummary,
    /// Tokens processed in this session.
    pub tokens: u64,
    /// Seconds of this session.
    pub seconds: f64,
    /// Whether the interrupt flag stopped it (after a checkpoint).
    pub interrupted: bool,
    /// The memory plan made before the run (none where the planner does not apply).
    pub memory_plan: Option<crate::plan::Plan>,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// SHA-256 of the training file's settings (parsed), to refuse resuming another run.
    pub config_hash: String,
    /// `running`, `complete` or `interrupted`.
    pub status: String,
    /// Steps done.
    pub steps_done: usize,
    /// Steps of the run.
    pub total_steps: usize,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// The data after preparation.
    pub data: DataSummary,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// The final weights, relative to the run directory.
    pub output: Option<String>,
    /// longctx's version.
    pub longctx_version: String,
}

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointState {
    schema_version: u32,
    config_hash: String,
    steps_done: usize,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// 1-based optimizer step.
    pub step: usize,
    /// 0-based epoch.
    pub epoch: usize,
    /// The step's loss.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens of the step.
    pub tokens: usize,
    /// Target tokens of the step.
    pub target_tokens: usize,
    /// Seconds the step took.
    pub seconds: f64,
}

/// A base model ready to train: the decoder, its tokenizer and chat template, and the
/// trainable variables by name (PEFT's names for LoRA, the checkpoint's for full training).
pub struct Trainable {
    /// The decoder (its trainable tensors are the variables').
    pub model: Llama,
    /// The tokenizer.
    pub tokenizer: HfTokenizer,
    /// The chat template.
    pub template: ChatTemplate,
    /// Trainable variables by name, sorted.
    pub vars: Vec<(String, Var)>,
    /// The base model's directory (full fine-tuning copies its files).
    pub dir: Option<PathBuf>,
}

fn is_gguf(path: &str) -> bool {
    longctx_models::load::is_gguf(Path::new(path))
}

/// Loads the base model of `config` for training on `device`: with LoRA, the frozen weights
/// (a GGUF file dequantized to f32) and fresh adapter variables (A uniform in ±1/√in as
/// PEFT's Kaiming init, B zero, seeded); for full fine-tuning every weight of a safetensors
/// model as a variable.
pub fn load_trainable(config: &TrainConfig, device: &Device) -> Result<Trainable> {
    let path = &config.model.path;
    let rope = config.model.rope_scaling.as_deref();
    let dtype = match config.model.dtype.as_deref() {
        Some("bf16") => DType::BF16,
        _ => DType::F32,
    };
    let in_model = |e: Error| e.in_file(path);
    let missing_template =
        || Error::Config(format!("{path}: the model has no chat template (tokenizer_config.json `chat_template`)"));
    if let Some(lora) = config.lora() {
        // `base_quant = "gguf"`: a GGUF file's quantized matrices stay quantized (QLoRA).
        let keep_gguf = lora.base_quant.as_deref() == Some("gguf");
        if keep_gguf && !is_gguf(path) {
            return Err(Error::Config(format!(
                "{path}: [lora] base_quant = \"gguf\" keeps a GGUF file's quantized weights; this is no GGUF file"
            )));
        }
        let loaded = if is_gguf(path) {
            load_gguf_with(Path::new(path), device, rope, !keep_gguf).map_err(|e| in_model(e.into()))?
        } else {
            let dir = resolve_model(path).map_err(|e| in_model(e.into()))?;
            load_hf_dir(&dir, dtype, device, rope).map_err(|e| in_model(e.into()))?
        };
        let dir = if is_gguf(path) { None } else { Some(resolve_model(path)?) };
        let mut model = loaded.model;
        if let Some(kind) = lora.base_quant()? {
            if is_gguf(path) || dtype != DType::F32 {
                return Err(Error::Config(format!(
                    "{path}: [lora] base_quant quantizes an f32 safetensors model (a GGUF file is quantized already)"
                )));
            }
            model.quantize_weights(kind).map_err(|e| in_model(Error::from(e)))?;
        }
        // Training products over quantized weights (a GGUF file's too) run on the dequantized
        // weights, in f32.
        model.set_quantized_products(longctx_models::qmatmul::Products::Dequantized)?;
        let vars = add_lora(&mut model, &lora, config.optim.seed, device)?;
        Ok(Trainable {
            model,
            tokenizer: loaded.tokenizer,
            template: loaded.chat_template.ok_or_else(missing_template)?,
            vars,
            dir,
        })
    } else {
        if is_gguf(path) {
            return Err(Error::Config(format!(
                "{path}: full fine-tuning needs a safetensors model (a GGUF file trains with LoRA)"
            )));
        }
        if dtype != DType::F32 {
            return Err(Error::Config("full fine-tuning keeps f32 weights (dtype = \"f32\")".into()));
        }
        let dir = resolve_model(path).map_err(|e| in_model(e.into()))?;
        let config_path = dir.join("config.json");
        let raw: LlamaHfConfig = serde_json::from_str(&fs_err::read_to_string(&config_path)?)
            .map_err(|e| Error::from(e).in_file(&config_path))?;
        let rope_override = rope
            .map(|s| longctx_models::config::parse_override(s, raw.positions.max_position_embeddings))
            .transpose()
            .map_err(|e| in_model(longctx_models::ModelError::from(e).into()))?;
        let model_config =
            raw.into_config(rope_override).map_err(|e| in_model(longctx_models::ModelError::from(e).into()))?;
        let mut varmap = VarMap::new();
        let model = Llama::new(model_config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        for file in weight_files(&dir)? {
            load_varmap_file(&mut varmap, &file)?;
        }
        let (tokenizer, template) = load_tokenizer(&dir).map_err(|e| in_model(e.into()))?;
        let mut vars: Vec<(String, Var)> =
            varmap.data().lock().expect("not poisoned").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Trainable { model, tokenizer, template: template.ok_or_else(missing_template)?, vars, dir: Some(dir) })
    }
}

/// Sets the variables of `varmap` that `file` holds (a shard may hold some of them).
fn load_varmap_file(varmap: &mut VarMap, file: &Path) -> Result<()> {
    let tensors = candle_core::safetensors::load(file, &Device::Cpu)?;
    let data = varmap.data().lock().expect("not poisoned");
    for (name, var) in data.iter() {
        if let Some(t) = tensors.get(name) {
            if t.dims() != var.dims() {
                return Err(Error::Config(format!(
                    "{}: tensor `{name}` has shape {:?}, the configuration needs {:?}",
                    file.display(),
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
    }
    Ok(())
}

/// Fresh LoRA variables on every target projection of `model`, seeded.
fn add_lora(model: &mut Llama, lora: &LoraSection, seed: u64, device: &Device) -> Result<Vec<(String, Var)>> {
    let parts = lora.parts()?;
    let scale = if lora.rslora { lora.alpha / (lora.r as f64).sqrt() } else { lora.alpha / lora.r as f64 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4C6F_5241);
    let config = model.config().clone();
    let mut vars = Vec::new();
    for layer in 0..config.num_layers {
        for &part in &parts {
            let (fin, fout) = part.features(&config).expect("a projection");
            let bound = 1.0 / (fin as f32).sqrt();
            let a: Vec<f32> = (0..lora.r * fin).map(|_| rng.random_range(-bound..bound)).collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (lora.r, fin), device)?)?;
            let b = Var::from_tensor(&Tensor::zeros((fout, lora.r), DType::F32, device)?)?;
            model.set_lora(layer, part, Some(Lora { a: a.as_tensor().clone(), b: b.as_tensor().clone(), scale }))?;
            let (na, nb) = tensor_names(layer, part);
            vars.push((na, a));
            vars.push((nb, b));
        }
    }
    vars.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(vars)
}

/// The training data of `config`, encoded with `tokenizer` and `template`.
pub fn load_data(
    config: &TrainConfig,
    tokenizer: &HfTokenizer,
    template: &ChatTemplate,
) -> Result<(Vec<Encoded>, DataSummary)> {
    let path = config.data.source()?.resolve()?;
    let mut conversations = read_jsonl(&path)?;
    if let Some(n) = config.data.limit {
        conversations.truncate(n);
    }
    prepare(&path, &conversations, tokenizer, template, config.data.max_seq_len, config.data.overlong)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of the settings that determine the weights (the parsed file, without where the
/// run goes), and of `max_steps`.
fn config_hash(config: &TrainConfig, max_steps: Option<usize>) -> Result<String> {
    let mut v = serde_json::to_value(config)?;
    if let Some(m) = v.as_object_mut() {
        m.remove("output_dir");
        m.remove("output");
        m.remove("distributed");
        m.insert("max_steps".into(), serde_json::json!(max_steps.or(config.optim.max_steps)));
    }
    Ok(hex(&Sha256::digest(v.to_string().as_bytes())))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(longctx_core::fs::write_atomic(path, bytes)?)
}

fn checkpoint_dir(run_dir: &Path, steps_done: usize) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{steps_done:06}"))
}

/// The complete checkpoints of a run, oldest first: `(steps done, directory)`.
fn checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = run_dir.join("checkpoints");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs_err::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse::<usize>().ok()) {
            if path.join("state.json").is_file() {
                out.push((n, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a checkpoint (into a temporary directory renamed into place), then removes the
/// oldest beyond `keep`.
fn save_checkpoint(
    run_dir: &Path,
    vars: &[(String, Var)],
    opt: &AdamW,
    state: &CheckpointState,
    keep: usize,
) -> Result<()> {
    let final_dir = checkpoint_dir(run_dir, state.steps_done);
    let tmp = final_dir.with_extension("tmp");
    if tmp.exists() {
        fs_err::remove_dir_all(&tmp)?;
    }
    fs_err::create_dir_all(&tmp)?;
    let tensors: HashMap<String, Tensor> = vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&tensors, tmp.join("trainable.safetensors"))?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    write_atomic(&tmp.join("state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
    if final_dir.exists() {
        fs_err::remove_dir_all(&final_dir)?;
    }
    fs_err::rename(&tmp, &final_dir)?;
    let all = checkpoints(run_dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        fs_err::remove_dir_all(old)?;
    }
    Ok(())
}

/// Loads a checkpoint's variables and optimizer state.
fn load_checkpoint(dir: &Path, vars: &[(String, Var)], opt: &mut AdamW) -> Result<()> {
    let path = dir.join("trainable.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    for (name, var) in vars {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::Config(format!("{}: no `{name}` (a checkpoint of another run?)", path.display())))?;
        if t.dims() != var.dims() {
            return Err(Error::Config(format!(
                "{}: `{name}` has shape {:?}, expected {:?}",
                path.display(),
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    opt.load(&dir.join("optimizer.safetensors"))
}

/// Keeps the first `steps` lines of `metrics.jsonl` (lines of steps a killed run did after its
/// last checkpoint are done again).
fn truncate_metrics(path: &Path, steps: usize) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = fs_err::read_to_string(path)?;
    let kept = text.lines().filter(|l| serde_json::from_str::<Metric>(l).is_ok_and(|m| m.step <= steps)).fold(
        String::new(),
        |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        },
    );
    write_atomic(path, kept.as_bytes())
}

/// The seed of step `step`'s micro-batch `micro`'s dropout masks.
fn dropout_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((step as u64).to_le_bytes());
    h.update((micro as u64).to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Writes the final weights: the adapter (LoRA) or a model directory (full fine-tuning).
fn save_output(config: &TrainConfig, trainable: &Trainable, run_dir: &Path) -> Result<PathBuf> {
    if let Some(lora) = config.lora() {
        let parts = lora.parts()?;
        let mut lc = LoraConfig::new(lora.r, lora.alpha, &parts, lora.dropout, lora.rslora);
        lc.base_model_name_or_path = Some(config.model.path.clone());
        let loras: BTreeMap<(usize, Part), Lora> =
            trainable.model.loras().into_iter().map(|(l, p, lora)| ((l, p), lora.clone())).collect();
        let out = run_dir.join("adapter");
        let tmp = run_dir.join("adapter.tmp");
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        Adapter { config: lc, loras }.save(&tmp)?;
        if out.exists() {
            fs_err::remove_dir_all(&out)?;
        }
        fs_err::rename(&tmp, &out)?;
        Ok(out)
    } else {
        let out = run_dir.join("model");
        let tmp = run_dir.join("model.tmp");
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        fs_err::create_dir_all(&tmp)?;
        let dir = trainable.dir.as_ref().expect("full fine-tuning has a model directory");
        for file in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "special_tokens_map.json",
        ] {
            if dir.join(file).is_file() {
                fs_err::copy(dir.join(file), tmp.join(file))?;
            }
        }
        let tensors: HashMap<String, Tensor> =
            trainable.vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))?;
        if out.exists() {
            fs_err::remove_dir_all(&out)?;
        }
        fs_err::rename(&tmp, &out)?;
        Ok(out)
    }
}

/// The steps done by the run in `run_dir`, with its last checkpoint loaded into `vars` and
/// `opt`; refuses a run of another configuration.
fn resume(run_dir: &Path, hash: &str, vars: &[(String, Var)], opt: &mut AdamW, total: usize) -> Result<usize> {
    let record: Option<RunRecord> =
        fs_err::read_to_string(run_dir.join("run.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    if record.as_ref().is_some_and(|r| r.config_hash != hash) {
        return Err(Error::Config(format!(
            "{}: the training file (or --max-steps) differs from the run's; resuming would not reproduce it. Train into another directory instead",
            run_dir.display()
        )));
    }
    let Some((n, dir)) = checkpoints(run_dir)?.pop() else {
        if record.is_some() {
            eprintln!("no checkpoint yet in {}: starting from step 0", run_dir.display());
        }
        return Ok(0);
    };
    let state: CheckpointState = serde_json::from_str(&fs_err::read_to_string(dir.join("state.json"))?)?;
    if state.config_hash != hash {
        return Err(Error::Config(format!("{}: a checkpoint of another configuration", dir.display())));
    }
    load_checkpoint(&dir, vars, opt)?;
    eprintln!("resuming from {} ({n} of {total} steps done)", dir.display());
    Ok(n)
}

/// What the steps of a run share.
struct StepContext<'a> {
    config: &'a TrainConfig,
    model: &'a Llama,
    vars: Vec<Var>,
    data: &'a [Encoded],
    warmup: usize,
    total: usize,
    device: Device,
}

impl StepContext<'_> {
    /// Optimizer step `s`: forward and backward of its micro-batches, clipping, AdamW.
    fn run(&self, s: usize, step: &Step, opt: &mut AdamW) -> Result<Metric> {
        let t0 = Instant::now();
        let config = self.config;
        let seqs: Vec<usize> = step.sequences().collect();
        let n_targets: Vec<usize> = seqs.iter().map(|&i| self.data[i].n_targets()).collect();
        let weight_of: HashMap<usize, f64> = seqs.iter().copied().zip(config.data.loss.weights(&n_targets)).collect();
        let dropout_p = config.lora().map_or(0.0, |l| l.dropout) as f32;
        let mut grads = Grads::default();
        let (mut loss, mut tokens) = (0.0, 0);
        for (mi, mb) in step.micro_batches.iter().enumerate() {
            let refs: Vec<&Encoded> = mb.iter().map(|&i| &self.data[i]).collect();
            let weights: Vec<f64> = mb.iter().map(|i| weight_of[i]).collect();
            let packed = Packed::new(&refs, &weights, &self.device)?;
            tokens += packed.tokens();
            let options = StepOptions {
                checkpointing: config.optim.gradient_checkpointing,
                head_chunk: 1024,
                dropout: (dropout_p > 0.0)
                    .then(|| LoraDropout { p: dropout_p, seed: dropout_seed(config.optim.seed, s, mi) }),
            };
            loss += forward_backward(self.model, &packed, &self.vars, &options, &mut grads)?;
        }
        let clip = config.optim.clip.filter(|&c| c > 0.0);
        let refs: Vec<&Var> = self.vars.iter().collect();
        let grad_norm = clip_grad_norm(&mut grads, &refs, clip)?;
        let lr = config.optim.schedule.lr(config.optim.lr, s, self.warmup, self.total);
        opt.step(&grads, lr)?;
        Ok(Metric {
            step: s + 1,
            epoch: step.epoch,
            loss,
            lr,
            grad_norm,
            tokens,
            target_tokens: n_targets.iter().sum(),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

/// The optimizer steps of a run over `data` (at most `max_steps`).
pub fn plan(config: &TrainConfig, data: &[Encoded], max_steps: Option<usize>) -> Vec<Step> {
    let lens: Vec<usize> = data.iter().map(Encoded::len).collect();
    let mut steps = plan_steps(
        &lens,
        config.data.batching,
        config.micro_batch_tokens(),
        config.optim.grad_accum,
        config.optim.epochs,
        config.optim.seed,
    );
    if let Some(m) = max_steps {
        steps.truncate(m);
    }
    steps
}

fn progress_bar(name: &str, total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_position(done as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] {wide_bar} {pos}/{len} steps (ETA {eta}) {msg}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Runs (or resumes) the training of `config`; `config_text` is the file as given (copied into
/// the run directory). Raising `interrupt` stops after the current step, with a checkpoint.
// One run from setup to final weights, in order; its parts are the functions above.
#[allow(clippy::too_many_lines)]
pub fn train(
    config: &TrainConfig,
    config_text: &str,
    options: &TrainOptions,
    interrupt: &AtomicBool,
) -> Result<TrainSummary> {
    let device = Device::Cpu;
    let base = options.output_dir.clone().unwrap_or_else(|| config.output_dir.clone());
    let run_dir = base.join(&config.name);
    let max_steps = options.max_steps.or(config.optim.max_steps);
    let hash = config_hash(config, max_steps)?;
    if !options.resume && run_dir.join("run.json").exists() {
        return Err(Error::Config(format!(
            "{} holds a training run already; pass --resume to continue it (from its last checkpoint), or remove it",
            run_dir.display()
        )));
    }
    // Everything that can fail on bad input happens before the run directory is written.
    let memory_plan = check_memory(config, options)?;
    let trainable = load_trainable(config, &device)?;
    let (data, summary) = load_data(config, &trainable.tokenizer, &trainable.template)?;
    let steps = plan(config, &data, max_steps);
    let total = steps.len();
    let warmup = config.optim.warmup(total);
    let mut opt = AdamW::new(trainable.vars.clone(), config.optim.adamw())?;
    let done = if options.resume { resume(&run_dir, &hash, &trainable.vars, &mut opt, total)? } else { 0 };
    fs_err::create_dir_all(&run_dir)?;
    fs_err::write(run_dir.join("config.toml"), config_text)?;
    let trainable_parameters = trainable.vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut record = RunRecord {
        schema_version: SCHEMA_VERSION,
        config_hash: hash.clone(),
        status: "running".into(),
        steps_done: done,
        total_steps: total,
        warmup_steps: warmup,
        data: summary.clone(),
        trainable_parameters,
        output: None,
        longctx_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_atomic(&run_dir.join("run.json"), serde_json::to_string_pretty(&record)?.as_bytes())?;
    let metrics_path = run_dir.join("metrics.jsonl");
    truncate_metrics(&metrics_path, done)?;
    let mut metrics = fs_err::OpenOptions::new().create(true).append(true).open(&metrics_path)?;

    let context = StepContext {
        config,
        model: &trainable.model,
        vars: trainable.vars.iter().map(|(_, v)| v.clone()).collect(),
        data: &data,
        warmup,
        total,
        device: device.clone(),
    };
    let bar = progress_bar(&config.name, total, done);
    let started = Instant::now();
    let (mut tokens_seen, mut last_loss, mut interrupted) = (0u64, None, false);
    let checkpoint = |done: usize, opt: &AdamW| {
        let state = CheckpointState { schema_version: SCHEMA_VERSION, config_hash: hash.clone(), steps_done: done };
        save_checkpoint(&run_dir, &trainable.vars, opt, &state, config.output.keep_checkpoints)
    };
    let mut done = done;
    for (s, step) in steps.iter().enumerate().skip(done) {
        let m = context.run(s, step, &mut opt)?;
        metrics.write_all(format!("{}\n", serde_json::to_string(&m)?).as_bytes())?;
        metrics.flush()?;
        tokens_seen += m.tokens as u64;
        last_loss = Some(m.loss);
        done = s + 1;
        bar.set_position(done as u64);
        bar.set_message(format!(
            "loss {:.4}, lr {:.2e}, {:.0} tok/s",
            m.loss,
            m.lr,
            tokens_seen as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
        let every = config.output.save_every;
        if every > 0 && done % every == 0 && done < total {
            checkpoint(done, &opt)?;
        }
        if interrupt.load(Ordering::SeqCst) && done < total {
            checkpoint(done, &opt)?;
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let output = if interrupted {
        None
    } else {
        if total > 0 && checkpoints(&run_dir)?.last().map(|c| c.0) != Some(total) {
            checkpoint(total, &opt)?;
        }
        Some(save_output(config, &trainable, &run_dir)?)
    };
    record.status = if interrupted { "interrupted" } else { "complete" }.into();
    record.steps_done = done;
    record.output = output.as_ref().and_then(|o| o.file_name()).map(|n| n.to_string_lossy().into_owned());
    write_atomic(&run_dir.join("run.json"), serde_json::to_string_pretty(&record)?.as_bytes())?;
    Ok(TrainSummary {
        run_dir,
        output,
        steps_done: done,
        total_steps: total,
        last_loss,
        data: summary,
        tokens: tokens_seen,
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
        memory_plan,
    })
}

/// The memory plan of `config` against this machine's available memory: refuses a run that
/// will not fit (unless told to go on), and keeps large buffers out of the heap so that freed
/// activations go back to the system (what the plan counts; glibc's heap otherwise keeps
/// them, 10–20 % more at 4k–8k tokens with checkpointing).
fn check_memory(config: &TrainConfig, options: &TrainOptions) -> Result<Option<crate::plan::Plan>> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy for later allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, crate::plan::MMAP_THRESHOLD);
    }
    let Some(spec) = crate::plan::training_spec(config)? else { return Ok(None) };
    let plan = crate::plan::plan(&spec)?;
    if !plan.fits && !options.skip_memory_check {
        return Err(Error::Config(format!(
            "the memory plan says this run will not fit in this machine's available memory:\n\n{}\npass --no-memory-check to train anyway",
            plan.render()
        )));
    }
    Ok(Some(plan))
}
