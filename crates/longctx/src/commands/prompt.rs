//! `longctx prompt EXPERIMENT.toml --variant V --dataset D --index I [--json]`: exactly what
//! the model receives for one sample (`longctx_runner::inspect`), with the token counts of
//! each step.

use std::io::Write;

use anyhow::{Context, Result};
use longctx_runner::Plan;
use serde_json::json;

use crate::cli::PromptArgs;

pub(crate) fn run(args: &PromptArgs) -> Result<()> {
    let plan = Plan::load(&args.experiment)?;
    let i = longctx_runner::inspect(&plan, &args.variant, &args.dataset, args.index)
        .with_context(|| args.experiment.display().to_string())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "variant": i.variant,
            "dataset": i.dataset,
            "index": i.index,
            "id": i.id,
            "request": i.request,
            "text": i.text,
            "tokens": i.tokens,
            "chat_template": i.chat_template,
            "strategy": i.applied,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "{}", i.text)?;
    drop(out);
    let a = &i.applied;
    eprintln!("---");
    eprintln!("variant {} · {} #{} ({}) · model {}", i.variant, i.dataset, i.index, i.id, i.backend);
    eprintln!(
        "context: {} tokens → {} after the strategy{}",
        a.context_tokens_before,
        a.context_tokens_after,
        a.kept_chunks.as_ref().map_or(String::new(), |k| format!(
            " ({} of {} chunks: {:?})",
            k.len(),
            a.n_chunks.unwrap_or(0),
            k
        ))
    );
    eprintln!(
        "prompt: {} tokens before the final cut to the budget of {} → {}{}",
        a.prompt_tokens_before,
        i.max_prompt_tokens,
        a.prompt_tokens,
        if a.truncated { " (middle truncated)" } else { "" }
    );
    let stop = &i.request.stop;
    eprintln!(
        "model input: {} tokens {}; up to {} new tokens{}{}",
        i.tokens,
        if i.chat_template {
            "with the chat template"
        } else {
            "without a chat template (LongBench skips it for this dataset, or the config turns it off)"
        },
        i.request.max_new_tokens,
        if stop.is_empty() { String::new() } else { format!(", stop at {stop:?}") },
        match i.window {
            Some(w) if i.over_window() => format!(" (over the window of {w}: the backend would reject it)"),
            _ => String::new(),
        }
    );
    if a.usage.requests > 0 || a.usage.cost_usd > 0.0 {
        eprintln!("retrieval cost: {} requests, ${:.6}", a.usage.requests, a.usage.cost_usd);
    }
    Ok(())
}
