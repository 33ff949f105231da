//! `longctx plan train --model M --seq-len N [...]`: the memory planner.

use std::io::Write;

use anyhow::{Context, Result};
use longctx_train::plan::{self, Method, Spec, Trainer};

use crate::cli::PlanTrainArgs;

pub(crate) fn train(args: &PlanTrainArgs) -> Result<()> {
    let shape = plan::model_shape(&args.model).with_context(|| format!("--model {}", args.model))?;
    let longctx = args.trainer == Trainer::Longctx;
    let method = if args.full {
        Method::Full
    } else {
        Method::Lora {
            r: args.lora.unwrap_or(16),
            targets: args.lora_targets.clone().unwrap_or_else(plan::all_modules),
            dropout: false,
        }
    };
    let budget = match args.gpu_memory_gib {
        Some(g) if g > 0.0 => g * (1u64 << 30) as f64,
        Some(g) => anyhow::bail!("--gpu-memory-gib {g}: must be positive"),
        None if longctx => plan::available_memory().context("this machine's available memory (pass --memory-gib)")?,
        None => 80.0 * (1u64 << 30) as f64,
    };
    let spec = Spec {
        micro_batch: args.micro_batch.unwrap_or(args.gpus),
        grad_accum: args.grad_accum,
        method,
        checkpointing: args.checkpointing,
        optimizer: args.optimizer,
        gpus: args.gpus,
        zero: args.zero,
        offload: args.offload.iter().copied().filter(|o| *o != plan::Offload::None).collect(),
        attention: args.attention,
        base_quant: args.base_quant,
        budget,
        ..Spec::new(args.trainer, shape, args.seq_len)
    };
    let spec = Spec { dtype: args.dtype.unwrap_or(spec.dtype), logits: args.logits.unwrap_or(spec.logits), ..spec };
    let plan = plan::plan(&spec)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?;
    } else {
        write!(out, "{}", plan.render())?;
    }
    Ok(())
}
