//! `longctx bench generate`: prefill and decode throughput of the native runtime per prompt
//! length, with the process's peak RSS and, for comparison, the size one `n × n` f32 score
//! matrix per head would have (never allocated: attention runs in query chunks).

use std::io::Write;

use anyhow::{Context, Result};
use candle_core::Device;
use longctx_models::generate::{generate, GenerationParams};
use longctx_models::llama::CausalLm;

use super::model::ModelArgs;
use crate::cli::{BenchGenerateArgs, KvCacheType};

/// Peak resident set size of this process in bytes (`VmHWM` of /proc/self/status).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(crate) fn generate_bench(args: &BenchGenerateArgs) -> Result<()> {
    if let Some(t) = args.threads {
        // candle's CPU kernels size their pool from this variable; set before any is built.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let device = Device::Cpu;
    let mut loaded = args.load_model(&device)?;
    loaded.model.set_kv_cache_dtype(args.kv_cache.map(KvCacheType::candle));
    let kv_dtype = loaded.model.kv_cache_dtype();
    let config = loaded.model.config().clone();
    let vocab = config.vocab_size as u32;
    let longest = args.prompt_tokens.iter().copied().max().unwrap_or(0);
    let source: Vec<u32> = match &args.prompt_ids {
        Some(path) => {
            let v: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(path)?)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            v["token_ids"]
                .as_array()
                .with_context(|| format!("{}: no `token_ids` list", path.display()))?
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .map(|id| id as u32 % vocab)
                .collect()
        }
        None => (0..longest as u64).map(|i| ((i * 2_654_435_761) % u64::from(vocab)) as u32).collect(),
    };
    let mut out = std::io::stdout().lock();
    for &n in &args.prompt_tokens {
        anyhow::ensure!(
            n >= 1 && n <= source.len(),
            "prompt length {n}: the prompt source has {} tokens",
            source.len()
        );
        let params = GenerationParams {
            max_new_tokens: args.gen_tokens,
            prefill_chunk: args.prefill_chunk,
            ignore_eos: true,
            ..Default::default()
        };
        let g = generate(&mut loaded.model, &source[..n], &params, &device, &|_| String::new())?;
        let row = serde_json::json!({
            "prompt_tokens": n,
            "gen_tokens": g.completion_tokens,
            "prefill_tok_s": n as f64 / g.prefill_s.max(1e-9),
            "decode_tok_s": g.completion_tokens as f64 / g.decode_s.max(1e-9),
            "prefill_s": g.prefill_s,
            "decode_s": g.decode_s,
            "peak_rss_bytes": peak_rss_bytes(),
            "kv_cache_bytes": config.kv_cache_bytes(n + args.gen_tokens, kv_dtype.size_in_bytes()),
            "full_score_matrix_bytes": (n + args.gen_tokens) * (n + args.gen_tokens) * 4,
        });
        if args.json {
            writeln!(out, "{row}")?;
        } else {
            writeln!(
                out,
                "prompt {n:>6}: prefill {:>9.1} tok/s, decode {:>7.1} tok/s, peak RSS {:.0} MiB (KV cache {:.1} MiB; one n×n f32 score matrix would be {:.0} MiB)",
                row["prefill_tok_s"].as_f64().unwrap_or(0.0),
                row["decode_tok_s"].as_f64().unwrap_or(0.0),
                row["peak_rss_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0,
                row["kv_cache_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0,
                row["full_score_matrix_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0,
            )?;
        }
    }
    Ok(())
}

/// `longctx bench train`: training tokens/s and peak RSS.
pub(crate) fn train_bench(args: &crate::cli::BenchTrainArgs) -> Result<()> {
    if let Some(t) = args.threads {
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let options = longctx_train::bench::BenchOptions {
        model: args.model.clone(),
        seq_len: args.seq_len,
        lora_r: (!args.full).then_some(args.lora_r),
        steps: args.steps.max(1),
        checkpointing: args.checkpointing,
    };
    let report = longctx_train::bench::bench(&options)?;
    let mut row = serde_json::to_value(&report)?;
    row["peak_rss_bytes"] = serde_json::json!(peak_rss_bytes());
    row["threads"] = serde_json::json!(args.threads);
    row["checkpointing"] = serde_json::json!(args.checkpointing);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{row}")?;
    } else {
        writeln!(
            out,
            "{} tokens per step, {} trainable parameters: {:.1} tokens/s (median of {} steps), peak RSS {:.0} MiB",
            report.seq_len,
            report.trainable_parameters,
            report.tokens_per_s,
            report.step_seconds.len(),
            peak_rss_bytes().unwrap_or(0) as f64 / 1_048_576.0
        )?;
    }
    Ok(())
}

/// `longctx bench serve`: a bounded load test of an OpenAI-compatible server.
pub(crate) fn serve_bench(args: &longctx_serve::LoadTestArgs) -> Result<()> {
    let report = longctx_serve::load_test(args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}
