//! `longctx score DIR`: LongBench's eval.py, exact and fast.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result};
use longctx_bench::dataset::Suite;
use longctx_bench::metrics::{FuzzBackend, MetricOptions};
use longctx_bench::score::{score_dir, DatasetScore, ScoreOptions, ScoreReport, BUCKETS};

use crate::cli::{Fuzz, ScoreArgs};

pub(crate) fn run(args: &ScoreArgs) -> Result<()> {
    let options = ScoreOptions {
        suite: if args.longbench_e { Suite::LongBenchE } else { Suite::LongBench },
        metric: MetricOptions {
            fuzz: match args.fuzz {
                Fuzz::Difflib => FuzzBackend::Difflib,
                Fuzz::Levenshtein => FuzzBackend::Levenshtein,
            },
        },
    };
    let report = score_dir(&args.dir, &options).with_context(|| format!("scoring {}", args.dir.display()))?;
    let json = report.result_json();
    let out = args.output.clone().unwrap_or_else(|| args.dir.join("result.json"));
    fs_err::write(&out, &json).context("writing result.json")?;
    if let Some(path) = &args.per_sample {
        write_per_sample(&report, path)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{json}")?;
    } else {
        write!(stdout, "{}", table(&report))?;
        writeln!(stdout, "wrote {}", out.display())?;
    }
    Ok(())
}

fn write_per_sample(report: &ScoreReport, path: &std::path::Path) -> Result<()> {
    let mut text = String::new();
    for d in &report.datasets {
        for (i, s) in d.per_sample.iter().enumerate() {
            let line = serde_json::json!({"dataset": d.spec.name, "line": i + 1, "score": s});
            writeln!(text, "{line}")?;
        }
    }
    fs_err::write(path, text).context("writing per-sample scores")?;
    Ok(())
}

/// A fixed-width table: dataset, metric, samples, score(s); an average row at the end.
fn table(report: &ScoreReport) -> String {
    let fmt = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{x:.2}") };
    let longbench_e = report.datasets.iter().any(|d| matches!(d.score, DatasetScore::Buckets(_)));
    let mut out = String::new();
    let header: Vec<&str> = if longbench_e { BUCKETS.to_vec() } else { vec!["score"] };
    let _ = write!(out, "{:<22} {:<22} {:>7}", "dataset", "metric", "samples");
    for h in &header {
        let _ = write!(out, " {h:>8}");
    }
    out.push('\n');
    let mut sums = vec![0.0; header.len()];
    let mut counts = vec![0usize; header.len()];
    for d in &report.datasets {
        let _ = write!(out, "{:<22} {:<22} {:>7}", d.spec.name, d.spec.metric.python_name(), d.per_sample.len());
        let values: Vec<f64> = match d.score {
            DatasetScore::Total(x) => vec![x],
            DatasetScore::Buckets(b) => b.to_vec(),
        };
        for (i, v) in values.iter().enumerate() {
            let _ = write!(out, " {:>8}", fmt(*v));
            if !v.is_nan() {
                sums[i] += v;
                counts[i] += 1;
            }
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<22} {:<22} {:>7}", "average", "", "");
    for (s, c) in sums.iter().zip(&counts) {
        let _ = write!(out, " {:>8}", if *c == 0 { "-".into() } else { fmt(s / *c as f64) });
    }
    out.push('\n');
    out
}
