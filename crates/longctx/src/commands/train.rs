//! `longctx train CONFIG.toml [--max-steps N] [--resume] [--output-dir DIR] [--export DIR --engine E [--gpus N]]`,
//! `longctx loss --model M [--adapter A] [--quantize Q] --data FILE --max-seq-len N [--batching B] [--loss L] [--json]`
//! and `longctx merge --model M --adapter A --out DIR`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use longctx_train::config::TrainConfig;
use longctx_train::data::{prepare, read_jsonl, Overlong};
use longctx_train::trainer::{Metric, TrainOptions};

use crate::cli::{Dtype, LossArgs, MergeArgs, TrainArgs};
use crate::commands::model;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn train(args: &TrainArgs) -> Result<()> {
    let text = fs_err::read_to_string(&args.config)?;
    let mut config = TrainConfig::parse(&text).with_context(|| args.config.display().to_string())?;
    if let (Some(dir), Some(engine)) = (&args.export, args.engine) {
        if let Some(gpus) = args.gpus {
            config.distributed.get_or_insert_with(Default::default).gpus = gpus;
        }
        let (s, d) = longctx_train::export::export(&config, &text, dir, engine, args.max_steps)
            .with_context(|| format!("exporting {} to {}", args.config.display(), engine.name()))?;
        eprintln!(
            "data: {} conversations, {} kept ({} tokens, {} target tokens); {} over max_seq_len dropped, {} truncated, {} without targets dropped",
            d.conversations, d.kept, d.tokens, d.target_tokens, d.dropped_overlong, d.truncated, d.dropped_no_target
        );
        eprintln!(
            "{} job: {} optimizer steps, {} packs ({} weight-0 fillers) on {} GPU(s); files: {}",
            engine.name(),
            s.steps,
            s.packs,
            s.filler_packs,
            s.gpus,
            s.files.join(", ")
        );
        eprintln!("run it: {}", s.launch);
        return Ok(());
    }
    let options = TrainOptions {
        max_steps: args.max_steps,
        resume: args.resume,
        output_dir: args.output_dir.clone(),
        skip_memory_check: args.no_memory_check,
    };
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the step and writing a checkpoint (Ctrl-C again to exit at once)");
    });
    let s = longctx_train::trainer::train(&config, &text, &options, &INTERRUPTED)
        .with_context(|| args.config.display().to_string())?;
    if let Some(p) = &s.memory_plan {
        eprintln!(
            "memory plan: peak {:.2} GiB ({} tokens per micro-batch) of {:.1} GiB available",
            longctx_train::plan::gib(p.peak_bytes),
            p.spec.seq_len,
            longctx_train::plan::gib(p.budget_bytes)
        );
    }
    let d = &s.data;
    eprintln!(
        "data: {} conversations, {} kept ({} tokens, {} target tokens); {} over max_seq_len dropped, {} truncated, {} without targets dropped",
        d.conversations, d.kept, d.tokens, d.target_tokens, d.dropped_overlong, d.truncated, d.dropped_no_target
    );
    let metrics_path = s.run_dir.join("metrics.jsonl");
    let points: Vec<(f64, f64)> = fs_err::read_to_string(&metrics_path)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Metric>(l).ok())
        .map(|m| (m.step as f64, m.loss))
        .collect();
    if !points.is_empty() {
        let plot = longctx_report::plot::loss_curve(&format!("{}: training loss", config.name), points);
        fs_err::write(s.run_dir.join("loss.svg"), plot.svg()?)?;
        fs_err::write(s.run_dir.join("loss.png"), plot.png()?)?;
    }
    eprintln!(
        "{} of {} steps; {} tokens in {:.1} s ({:.0} tokens/s); last loss {}",
        s.steps_done,
        s.total_steps,
        s.tokens,
        s.seconds,
        s.tokens as f64 / s.seconds.max(1e-9),
        s.last_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    eprintln!("metrics: {}", metrics_path.display());
    if s.interrupted {
        bail!("interrupted after step {}; run the same command with --resume to continue", s.steps_done);
    }
    if let Some(out) = &s.output {
        eprintln!("weights: {}", out.display());
    }
    Ok(())
}

pub(crate) fn loss(args: &LossArgs) -> Result<()> {
    let device = Device::Cpu;
    let loaded = model::load(
        &args.model,
        Dtype::F32,
        args.rope_scaling.as_deref(),
        args.adapter.as_deref(),
        args.quantize,
        &device,
    )?;
    let template = loaded.chat_template.context("the model has no chat template")?;
    let conversations = read_jsonl(&args.data)?;
    let overlong = if args.truncate { Overlong::Truncate } else { Overlong::Drop };
    let (data, _) = prepare(&args.data, &conversations, &loaded.tokenizer, &template, args.max_seq_len, overlong)?;
    let report = longctx_train::step::evaluate(&loaded.model, &data, args.batching, args.loss, args.max_seq_len)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "loss {:.6} over {} sequences ({} target tokens of {} tokens)",
            report.loss, report.sequences, report.target_tokens, report.tokens
        )?;
    }
    Ok(())
}

pub(crate) fn merge(args: &MergeArgs) -> Result<()> {
    let n = longctx_train::merge::merge(&args.model, &args.adapter, &args.out)
        .with_context(|| format!("merging {} into {}", args.adapter.display(), args.model))?;
    eprintln!("merged {n} weights: {}", args.out.display());
    Ok(())
}
