//! `longctx datasets [NAME]`: the dataset table, or a summary of one loaded dataset.

use std::io::Write;

use anyhow::{Context, Result};
use longctx_bench::dataset::{load, DataSource, Suite, DATASETS};
use longctx_bench::prompt::{max_new_tokens, template};

use crate::cli::DatasetsArgs;

pub(crate) fn run(args: &DatasetsArgs) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let Some(name) = &args.name else {
        writeln!(stdout, "{:<22} {:<22} {:>4} {:>7} {:>5} {:>4}", "dataset", "metric", "lang", "max_gen", "chat", "e")?;
        for d in DATASETS {
            writeln!(
                stdout,
                "{:<22} {:<22} {:>4} {:>7} {:>5} {:>4}",
                d.name,
                d.metric.python_name(),
                d.language,
                max_new_tokens(d),
                if d.skip_chat_template { "no" } else { "yes" },
                if d.in_longbench_e { "yes" } else { "" }
            )?;
        }
        return Ok(());
    };
    let source = if args.data == "hub" { DataSource::official_hub() } else { DataSource::local(&args.data) };
    let suite = if args.longbench_e { Suite::LongBenchE } else { Suite::LongBench };
    let samples = load(&source, name, suite).with_context(|| format!("loading `{name}` from {}", args.data))?;
    let spec = longctx_bench::dataset::dataset(name)?;
    let mut lengths: Vec<u64> = samples.iter().map(|s| s.length).collect();
    lengths.sort_unstable();
    writeln!(stdout, "{name}: {} samples", samples.len())?;
    if let (Some(min), Some(max)) = (lengths.first(), lengths.last()) {
        writeln!(stdout, "length: min {min}, median {}, max {max}", lengths[lengths.len() / 2])?;
    }
    writeln!(stdout, "metric: {}, max new tokens: {}", spec.metric.python_name(), max_new_tokens(spec))?;
    writeln!(stdout, "prompt template:\n{}", template(spec))?;
    Ok(())
}
