//! `longctx perplexity --model M --file F --context N [--stride S] [--rope-scaling KIND:FACTOR]
//! [--per-token] [--json]`.
//!
//! JSON output (one object): `tokens` (scored tokens), `nll_sum` (nats), `ppl`
//! (`exp(nll_sum / tokens)`), and `per_token_nll` (one f32 per scored token; empty unless
//! `--per-token`).

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use longctx_core::Tokenizer;
use longctx_models::perplexity::perplexity;

use super::model::ModelArgs;
use crate::cli::PerplexityArgs;

pub(crate) fn run(args: &PerplexityArgs) -> Result<()> {
    let stride = args.stride.unwrap_or(args.context);
    if args.context < 2 || stride == 0 || stride > args.context {
        bail!("--context must be at least 2 and --stride between 1 and --context (got {} and {stride})", args.context);
    }
    let device = Device::Cpu;
    let mut loaded = args.load_model(&device)?;
    let text = fs_err::read_to_string(&args.file)?;
    let ids = loaded.tokenizer.encode(&text, false).with_context(|| format!("tokenizing {}", args.file.display()))?;
    if ids.len() < 2 {
        bail!("{}: fewer than two tokens, nothing to score", args.file.display());
    }
    let quiet = args.json;
    let mut p = perplexity(&mut loaded.model, &ids, args.context, stride, &device, |done, total| {
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
