//! `longctx ruler generate --tokenizer M --task T --length N [--samples S] [--seed 42]
//! [--depth D] --out FILE.jsonl`.

use anyhow::{Context, Result};
use longctx_bench::ruler::data::DataPaths;
use longctx_runner::ruler::{generate as generate_samples, write, GenerateOptions};

use crate::cli::RulerGenerateArgs;

pub(crate) fn generate(args: &RulerGenerateArgs) -> Result<()> {
    let options = GenerateOptions {
        tokenizer: args.tokenizer.clone(),
        task: args.task.clone(),
        length: args.length,
        samples: args.samples,
        seed: args.seed,
        depth: args.depth,
        data: DataPaths {
            words: Some(args.words.clone()),
            essay: args.essay.clone(),
            squad: args.squad.clone(),
            hotpotqa: args.hotpotqa.clone(),
        },
        no_chat_template: args.no_chat_template,
    };
    let samples = generate_samples(&options)?;
    write(&samples, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    for (s, _) in &samples {
        eprintln!(
            "{} #{}: {} prompt tokens + {} to generate = {} of {}, haystack {}{}",
            s.task,
            s.index,
            s.prompt_tokens,
            s.length - s.prompt_tokens,
            s.length,
            s.target_length,
            s.haystack,
            s.depth.map(|d| format!(", needle at {d} %")).unwrap_or_default()
        );
    }
    eprintln!("wrote {} samples to {}", samples.len(), args.out.display());
    Ok(())
}
