//! `longctx ruler generate`: RULER samples of one task at one length, fitted in a model's
//! tokenizer and chat template exactly as `longctx run` fits them, to inspect.

use std::path::{Path, PathBuf};

use longctx_backends::native::render_prompt;
use longctx_bench::ruler::data::{DataPaths, RulerData};
use longctx_bench::ruler::generate::{Generated, Generator};
use longctx_bench::ruler::task;
use longctx_core::{ChatMessage, PromptInput};
use longctx_models::load::load_tokenizer;
use serde_json::{json, Value};

use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// A model directory, GGUF file or hub id whose tokenizer and chat template count tokens.
    pub tokenizer: PathBuf,
    /// The task.
    pub task: String,
    /// Target length (prompt + tokens to generate).
    pub length: usize,
    /// Samples.
    pub samples: usize,
    /// Seed.
    pub seed: u64,
    /// Needle depth in percent for every sample (single-needle tasks).
    pub depth: Option<f64>,
    /// The data files.
    pub data: DataPaths,
    /// Count the prompt as raw text (RULER's `base` template) instead of the chat template.
    pub no_chat_template: bool,
}

/// Generates the samples, each with the prompt as the model receives it.
pub fn generate(o: &GenerateOptions) -> Result<Vec<(Generated, String)>> {
    let t = task(&o.task)?;
    if let Some(d) = o.depth {
        if !(0.0..=100.0).contains(&d) {
            invalid!("--depth must be between 0 and 100 (percent), not {d}");
        }
    }
    let missing: Vec<String> = t.needs().into_iter().filter_map(|n| o.data.missing(n)).collect();
    if !missing.is_empty() {
        invalid!("task `{}` needs data: {}", t.name, missing.join("; "));
    }
    let data = RulerData::load(&o.data, &t.needs())?;
    let (tokenizer, template) = load_tokenizer(&o.tokenizer).map_err(|e| Error::from(e).in_file(&o.tokenizer))?;
    let template = if o.no_chat_template { None } else { template };
    let input = |user: &str, prefix: &str| match template {
        Some(_) => PromptInput::Chat(vec![ChatMessage::new("user", user), ChatMessage::new("assistant", prefix)]),
        None => PromptInput::Text(format!("{user}{prefix}")),
    };
    let render = |user: &str, prefix: &str| render_prompt(&input(user, prefix), &tokenizer, template.as_ref());
    let count = |user: &str, prefix: &str| -> longctx_bench::Result<usize> {
        render(user, prefix)
            .map(|r| r.ids.len())
            .map_err(|e| longctx_bench::Error::Tokenizer(longctx_core::TokenizeError(e.to_string())))
    };
    let g = Generator::new(t, &data, o.length, o.seed, &count)?;
    (0..o.samples)
        .map(|i| {
            let s = g.sample(i, o.depth)?;
            let prompt = render(&s.input, &s.answer_prefix).map_err(|e| Error::Invalid(e.to_string()))?.text;
            Ok((s, prompt))
        })
        .collect()
}

/// One line of `longctx ruler generate`'s output.
pub fn line(s: &Generated, prompt: &str) -> Value {
    json!({
        "index": s.index,
        "task": s.task,
        "target_length": s.target_length,
        "input": s.input,
        "answer_prefix": s.answer_prefix,
        "outputs": s.outputs,
        "prompt": prompt,
        "prompt_tokens": s.prompt_tokens,
        "length": s.length,
        "depth": s.depth,
        "haystack": s.haystack,
        "context_start": s.context.start,
        "context_end": s.context.end,
    })
}

/// Writes the samples to `out` as JSONL (atomically).
pub fn write(samples: &[(Generated, String)], out: &Path) -> Result<()> {
    let mut text = String::new();
    for (s, p) in samples {
        text.push_str(&line(s, p).to_string());
        text.push('\n');
    }
    longctx_core::fs::write_atomic(out, text.as_bytes())?;
    Ok(())
}
