//! `longctx embed`, `longctx retrieve`, `longctx compress` and `longctx bench embed`: the
//! pieces of the RAG and compression strategies, each usable and checkable on its own.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use longctx_context::chunk::ChunkConfig;
use longctx_context::embed::SentenceEmbedder;
use longctx_context::rag::{Order, Retrieval};
use longctx_models::encoder::Precision;

use longctx_context::llmlingua2::{CompressOptions, LlmLingua2};

use crate::cli::{BenchEmbedArgs, CompressArgs, EmbedArgs, RetrieveArgs};

/// The `text` field of every line of a JSONL file, in order; errors name the file and line.
pub(crate) fn read_texts(path: &Path) -> Result<Vec<String>> {
    let file = fs_err::File::open(path)?;
    let mut texts = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: unreadable line", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let text =
            v["text"].as_str().with_context(|| format!("{}:{}: no string field `text`", path.display(), i + 1))?;
        texts.push(text.to_string());
    }
    Ok(texts)
}

fn load_embedder(dir: &Path, batch_size: usize, precision: Precision) -> Result<SentenceEmbedder> {
    Ok(SentenceEmbedder::load(dir)
        .and_then(|e| e.with_precision(precision))
        .with_context(|| format!("loading the embedder from {}", dir.display()))?
        .with_batch_size(batch_size))
}

pub(crate) fn embed(args: &EmbedArgs) -> Result<()> {
    let texts = read_texts(&args.input)?;
    let model = load_embedder(&args.model, args.batch_size, args.precision)?;
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(fs_err::File::create(p)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    // One batch at a time, flushed, so that lines already written survive a later failure.
    for (b, batch) in texts.chunks(args.batch_size.max(1)).enumerate() {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let vectors = model.embed_texts(&refs).with_context(|| {
            format!("{}: embedding lines from text {}", args.input.display(), b * args.batch_size + 1)
        })?;
        for v in vectors {
            writeln!(out, "{}", serde_json::json!({ "embedding": v }))?;
        }
        out.flush()?;
    }
    Ok(())
}

pub(crate) fn retrieve(args: &RetrieveArgs) -> Result<()> {
    let context = fs_err::read_to_string(&args.context_file)?;
    let model = load_embedder(&args.embedder, args.batch_size, args.precision)?;
    let chunking = ChunkConfig {
        size: args.chunk_chars,
        overlap: args.overlap,
        respect_words: args.respect_words,
        ..ChunkConfig::default()
    };
    let r = Retrieval::new(&context, &args.query, &chunking, &model, None)?;
    let order = if args.score_order { Order::Score } else { Order::Document };
    let separator = unescape(&args.separator);
    let mut out = std::io::stdout().lock();
    for (i, &k) in args.k.iter().enumerate() {
        let sel = r.select(&context, k, order, &separator);
        if args.json {
            let row = serde_json::json!({
                "n_chunks": sel.n_chunks,
                "k": k,
                "ids": sel.ids,
                "scores": sel.scores,
                "whole_context": sel.whole,
                "text": sel.text,
            });
            writeln!(out, "{row}")?;
            continue;
        }
        if i == 0 {
            writeln!(out, "chunks: {}", sel.n_chunks)?;
        }
        writeln!(out, "k: {k}{}", if sel.whole { " (whole context)" } else { "" })?;
        let ids: Vec<String> = sel.ids.iter().map(ToString::to_string).collect();
        writeln!(out, "ids: {}", ids.join(" "))?;
        let scores: Vec<String> = sel.scores.iter().map(|s| format!("{s:.6}")).collect();
        writeln!(out, "scores: {}", scores.join(" "))?;
        if args.show_text {
            writeln!(out, "---\n{}", sel.text)?;
        }
    }
    Ok(())
}

/// `\n`, `\t` and `\\` written on a command line, as the characters they stand for.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') | None => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

pub(crate) fn compress(args: &CompressArgs) -> Result<()> {
    let text = fs_err::read_to_string(&args.input)?;
    let model = LlmLingua2::load(&args.model, args.tokenizer.as_deref())
        .with_context(|| format!("loading the LLMLingua-2 model from {}", args.model.display()))?;
    let options = CompressOptions {
        rate: args.rate,
        target_token: args.target_token.unwrap_or(-1.0),
        force_tokens: args.force_token.iter().map(|t| unescape(t)).collect(),
        drop_consecutive: args.drop_consecutive,
        force_reserve_digit: args.force_reserve_digit,
        ..CompressOptions::default()
    };
    let result = model.compress(&text, &options).with_context(|| format!("compressing {}", args.input.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&result)?)?;
    } else {
        writeln!(out, "{}", result.compressed_prompt)?;
        writeln!(
            out,
            "--- {} -> {} cl100k tokens ({}, {})",
            result.origin_tokens, result.compressed_tokens, result.rate, result.ratio
        )?;
    }
    Ok(())
}

pub(crate) fn bench_embed(args: &BenchEmbedArgs) -> Result<()> {
    // candle's CPU kernels size their pool from this variable; set before any is built.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let texts = read_texts(&args.input)?;
    anyhow::ensure!(!texts.is_empty(), "{}: no texts", args.input.display());
    let model = load_embedder(&args.model, args.batch_size, args.precision)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Warm-up (page in the weights, start the thread pool).
    model.embed_texts(&refs[..refs.len().min(4)])?;
    let mut best = f64::INFINITY;
    let mut all = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let v = model.embed_texts(&refs)?;
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(v.len() == refs.len(), "embedded {} of {} texts", v.len(), refs.len());
        all.push(s);
        best = best.min(s);
    }
    all.sort_by(f64::total_cmp);
    let median = all[all.len() / 2];
    let row = serde_json::json!({
        "chunks": refs.len(),
        "seconds": median,
        "chunks_per_s": refs.len() as f64 / median,
        "best_chunks_per_s": refs.len() as f64 / best,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "precision": args.precision.to_string(),
        "amx": longctx_models::amx::available(),
        "repeat": all.len(),
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{row}")?;
    } else {
        writeln!(
            out,
            "{} texts, {} thread(s), batch {}, {}: {:.1} chunks/s (median of {}; best {:.1})",
            refs.len(),
            args.threads,
            args.batch_size,
            args.precision,
            refs.len() as f64 / median,
            all.len(),
            refs.len() as f64 / best
        )?;
    }
    Ok(())
}
