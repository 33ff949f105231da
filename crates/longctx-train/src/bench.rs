//! `longctx bench train`: training throughput on one long sequence per optimizer step (random
//! token ids, every position a target), the unit `tools/bench/train_vs_torch.py` compares with
//! transformers + peft.

use std::time::Instant;

use candle_core::Device;
use longctx_models::llama::CausalLm;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{DataSection, LoraSection, ModelSection, OptimSection, OutputSection, TrainConfig};
use crate::data::Encoded;
use crate::optim::{clip_grad_norm, AdamW};
use crate::step::{forward_backward, Grads, Packed, StepOptions};
use crate::trainer::load_trainable;
use crate::Result;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Model directory, hub id or GGUF file.
    pub model: String,
    /// Tokens per sequence (one sequence per step).
    pub seq_len: usize,
    /// LoRA rank on every projection (alpha = 2r); `None`: full fine-tuning.
    pub lora_r: Option<usize>,
    /// Measured steps (after one warm-up step).
    pub steps: usize,
    /// Gradient checkpointing per layer.
    pub checkpointing: bool,
}

/// What was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Seconds of each measured step (forward, backward, clipping, AdamW).
    pub step_seconds: Vec<f64>,
    /// `seq_len` over the median step time.
    pub tokens_per_s: f64,
    /// The loss of each step.
    pub losses: Vec<f64>,
}

/// Runs one warm-up and `steps` measured optimizer steps.
pub fn bench(options: &BenchOptions) -> Result<BenchReport> {
    let device = Device::Cpu;
    let config = TrainConfig {
        name: "bench".into(),
        output_dir: "runs/train".into(),
        full: options.lora_r.is_none(),
        model: ModelSection { path: options.model.clone(), dtype: None, rope_scaling: None },
        data: DataSection {
            path: Some("-".into()),
            hub: None,
            file: None,
            max_seq_len: options.seq_len,
            overlong: crate::data::Overlong::Drop,
            batching: crate::batch::Batching::Naive,
            loss: crate::loss::LossKind::TokenMean,
            limit: None,
        },
        lora: options.lora_r.map(|r| LoraSection { r, alpha: 2.0 * r as f64, ..LoraSection::default() }),
        optim: OptimSection { gradient_checkpointing: options.checkpointing, ..OptimSection::default() },
        output: OutputSection::default(),
        distributed: None,
    };
    let trainable = load_trainable(&config, &device)?;
    let vocab = trainable.model.config().vocab_size as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let vars: Vec<_> = trainable.vars.iter().map(|(_, v)| v.clone()).collect();
    let refs: Vec<_> = vars.iter().collect();
    let mut opt = AdamW::new(trainable.vars.clone(), config.optim.adamw())?;
    let step_options = StepOptions { checkpointing: options.checkpointing, ..StepOptions::default() };
    let (mut seconds, mut losses) = (Vec::new(), Vec::new());
    for step in 0..=options.steps {
        let ids: Vec<u32> = (0..options.seq_len).map(|_| rng.random_range(0..vocab)).collect();
        let seq = Encoded { targets: vec![true; ids.len()], ids, line: 0, truncated: false };
        let weight = 1.0 / (options.seq_len - 1) as f64;
        let t0 = Instant::now();
        let packed = Packed::new(&[&seq], &[weight], &device)?;
        let mut grads = Grads::default();
        let loss = forward_backward(&trainable.model, &packed, &vars, &step_options, &mut grads)?;
        clip_grad_norm(&mut grads, &refs, Some(1.0))?;
        opt.step(&grads, 1e-4)?;
        if step > 0 {
            seconds.push(t0.elapsed().as_secs_f64());
            losses.push(loss);
        }
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(BenchReport {
        seq_len: options.seq_len,
        trainable_parameters: trainable.vars.iter().map(|(_, v)| v.elem_count()).sum(),
        step_seconds: seconds,
        tokens_per_s: options.seq_len as f64 / median,
        losses,
    })
}
