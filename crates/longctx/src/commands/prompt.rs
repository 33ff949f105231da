//! `longctx prompt EXPERIMENT.toml --variant V --dataset D --index I [--json]`: exactly what
//! the model receives for one sample, after the strategy and the chat template, with the
//! token counts of each step. Nothing is hidden: the text printed is the text tokenized.

use std::io::Write;

use anyhow::{bail, Context, Result};
use longctx_core::PromptInput;
use serde_json::json;

use crate::cli::PromptArgs;
use crate::plan::{self, ModelRuntime, Plan, StrategyFactory};

pub(crate) fn run(args: &PromptArgs) -> Result<()> {
    let plan = Plan::load(&args.experiment)?;
    let Some(variant) = plan.variants.iter().find(|v| v.name == args.variant) else {
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        bail!("no variant `{}` in {}; the variants are: {}", args.variant, args.experiment.display(), names.join(", "));
    };
    let spec = match plan.suite {
        longctx_bench::dataset::Suite::LongBench => longctx_bench::dataset::dataset(&args.dataset)?,
        longctx_bench::dataset::Suite::LongBenchE => longctx_bench::dataset::dataset_e(&args.dataset)?,
    };
    let samples = plan.samples(spec, None)?;
    let Some(sample) = samples.get(args.index) else {
        bail!("{} has {} samples; --index {} is out of range", spec.name, samples.len(), args.index);
    };
    let model_config = &plan.models[variant.model_index];
    let rt = ModelRuntime::load(model_config)?;
    let strategy = StrategyFactory::default().build(variant, &plan.experiment.pricing)?;
    let applied = plan::apply(strategy.as_ref(), spec, sample, &rt)
        .with_context(|| format!("{} sample {} ({})", spec.name, args.index, sample.id))?;
    let request = rt.request(spec, applied.prompt.clone());
    let rendered = rt.render(&request).map_err(|e| anyhow::anyhow!("{e}"))?;
    let window_note = match rt.native() {
        Some(n) if rendered.ids.len() + request.max_new_tokens > n.window() => {
            format!(" (over the window of {}: the backend would reject it)", n.window())
        }
        _ => String::new(),
    };
    let chat = matches!(*rt.model_input(&request), PromptInput::Chat(_));
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "variant": variant.name,
            "dataset": spec.name,
            "index": args.index,
            "id": sample.id,
            "request": request,
            "text": rendered.text,
            "tokens": rendered.ids.len(),
            "chat_template": chat,
            "strategy": applied,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "{}", rendered.text)?;
    drop(out);
    eprintln!("---");
    eprintln!(
        "variant {} · {} #{} ({}) · model {}",
        variant.name,
        spec.name,
        args.index,
        sample.id,
        rt.backend.describe()
    );
    eprintln!(
        "context: {} tokens → {} after the strategy{}",
        applied.context_tokens_before,
        applied.context_tokens_after,
        applied.kept_chunks.as_ref().map_or(String::new(), |k| format!(
            " ({} of {} chunks: {:?})",
            k.len(),
            applied.n_chunks.unwrap_or(0),
            k
        ))
    );
    eprintln!(
        "prompt: {} tokens before the final cut to the budget of {} → {}{}",
        applied.prompt_tokens_before,
        model_config.max_prompt_tokens,
        applied.prompt_tokens,
        if applied.truncated { " (middle truncated)" } else { "" }
    );
    eprintln!(
        "model input: {} tokens {}; up to {} new tokens{}{}",
        rendered.ids.len(),
        if chat {
            "with the chat template"
        } else {
            "without a chat template (LongBench skips it for this dataset, or the config turns it off)"
        },
        request.max_new_tokens,
        if request.stop.is_empty() { String::new() } else { format!(", stop at {:?}", request.stop) },
        window_note
    );
    if applied.usage.requests > 0 || applied.usage.cost_usd > 0.0 {
        eprintln!("retrieval cost: {} requests, ${:.6}", applied.usage.requests, applied.usage.cost_usd);
    }
    Ok(())
}
