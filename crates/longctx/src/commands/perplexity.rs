//! `longctx perplexity --model M --file F --context N [--stride S] [--rope-scaling KIND:FACTOR]
//! [--per-token] [--json]` and
//! `longctx perplexity --model M --file F --lengths N,N,… [--rope-scaling none|KIND:FACTOR]…
//! [--plot FILE] [--json]`.
//!
//! JSON output (one object): `tokens` (scored tokens), `nll_sum` (nats), `ppl`
//! (`exp(nll_sum / tokens)`), and `per_token_nll` (one f32 per scored token; empty unless
//! `--per-token`). With `--lengths`: `model`, `file`, `file_tokens` and `variants`, one per
//! `--rope-scaling` (`none`: the model's own RoPE), each `{"rope_scaling", "points": [{"length",
//! "tokens", "nll_sum", "ppl", "seconds"}]}`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use longctx_core::Tokenizer;
use longctx_models::perplexity::{by_length, perplexity, LengthPoint};

use super::model;
use crate::cli::PerplexityArgs;

struct Variant {
    rope_scaling: String,
    points: Vec<LengthPoint>,
}

pub(crate) fn run(args: &PerplexityArgs) -> Result<()> {
    if let Some(lengths) = &args.lengths {
        return run_lengths(args, lengths);
    }
    let context = args.context.expect("clap requires --context without --lengths");
    let stride = args.stride.unwrap_or(context);
    if context < 2 || stride == 0 || stride > context {
        bail!("--context must be at least 2 and --stride between 1 and --context (got {context} and {stride})");
    }
    if args.rope_scaling.len() > 1 {
        bail!("several --rope-scaling values compare variants with --lengths; with --context give one");
    }
    let device = Device::Cpu;
    let rope = args.rope_scaling.first().map(String::as_str).filter(|r| *r != "none");
    let mut loaded = model::load(&args.model, args.dtype, rope, args.adapter.as_deref(), args.quantize, &device)?;
    let text = fs_err::read_to_string(&args.file)?;
    let ids = loaded.tokenizer.encode(&text, false).with_context(|| format!("tokenizing {}", args.file.display()))?;
    if ids.len() < 2 {
        bail!("{}: fewer than two tokens, nothing to score", args.file.display());
    }
    let quiet = args.json;
    let mut p = perplexity(&mut loaded.model, &ids, context, stride, &device, |done, total| {
        if !quiet {
            eprint!("\r{done}/{total} tokens");
        }
    })?;
    if !quiet {
        eprintln!();
    }
    if !args.per_token {
        p.per_token_nll.clear();
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&p)?)?;
    } else {
        writeln!(out, "tokens {}  nll_sum {:.4}  ppl {:.4}", p.tokens, p.nll_sum, p.ppl)?;
        for (i, nll) in p.per_token_nll.iter().enumerate() {
            writeln!(out, "{i}\t{nll}")?;
        }
    }
    Ok(())
}

fn run_lengths(args: &PerplexityArgs, lengths: &[usize]) -> Result<()> {
    let device = Device::Cpu;
    let rope_variants: Vec<String> =
        if args.rope_scaling.is_empty() { vec!["none".into()] } else { args.rope_scaling.clone() };
    let mut lengths = lengths.to_vec();
    lengths.sort_unstable();
    lengths.dedup();
    let text = fs_err::read_to_string(&args.file)?;
    let mut variants = Vec::new();
    let mut file_tokens = 0;
    for rope in &rope_variants {
        let override_ = (rope != "none").then_some(rope.as_str());
        let mut loaded =
            model::load(&args.model, args.dtype, override_, args.adapter.as_deref(), args.quantize, &device)
                .with_context(|| format!("loading {} with --rope-scaling {rope}", args.model.display()))?;
        let ids =
            loaded.tokenizer.encode(&text, false).with_context(|| format!("tokenizing {}", args.file.display()))?;
        file_tokens = ids.len();
        if let Some(&longest) = lengths.last() {
            if longest > ids.len() {
                bail!("{}: {} tokens, shorter than --lengths {longest}", args.file.display(), ids.len());
            }
        }
        let quiet = args.json;
        let points = by_length(&mut loaded.model, &ids, &lengths, &device, |length| {
            if !quiet {
                eprintln!("{rope}: {length} tokens done");
            }
        })?;
        variants.push(Variant { rope_scaling: rope.clone(), points });
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = serde_json::json!({
            "model": args.model.display().to_string(),
            "file": args.file.display().to_string(),
            "file_tokens": file_tokens,
            "variants": variants
                .iter()
                .map(|v| serde_json::json!({"rope_scaling": v.rope_scaling, "points": v.points}))
                .collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{:>10}", "length")?;
        for v in &variants {
            write!(out, " {:>14}", v.rope_scaling)?;
        }
        writeln!(out)?;
        for (i, length) in lengths.iter().enumerate() {
            write!(out, "{length:>10}")?;
            for v in &variants {
                write!(out, " {:>14.4}", v.points[i].ppl)?;
            }
            writeln!(out)?;
        }
    }
    if let Some(path) = &args.plot {
        let name =
            args.model.file_name().map_or_else(|| args.model.display().to_string(), |n| n.to_string_lossy().into());
        let series = variants
            .iter()
            .map(|v| (v.rope_scaling.clone(), v.points.iter().map(|p| (p.length as f64, p.ppl)).collect()))
            .collect();
        let plot = longctx_report::plot::perplexity_by_length(&format!("{name}: perplexity by context length"), series);
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => fs_err::write(path, plot.png()?)?,
            Some("svg") => fs_err::write(path, plot.svg()?)?,
            _ => bail!("--plot {}: give an .svg or .png file", path.display()),
        }
    }
    Ok(())
}
