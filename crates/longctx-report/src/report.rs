//! The report's content — header, tables, notes, plots — independent of the output format, so
//! that the Markdown and the HTML page show the same numbers.

use longctx_bench::dataset::Suite;
use longctx_bench::score::BUCKETS;

use crate::plot::{self, Plot};
use crate::summary::{mean, RunSummary, VariantSummary};

/// Shown where a number is undefined (no predictions, or a baseline score of 0).
pub const MISSING: &str = "–";

/// A report, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The page title.
    pub title: String,
    /// `(key, value)` lines describing the run.
    pub header: Vec<(String, String)>,
    /// The tables, in order.
    pub sections: Vec<Section>,
    /// The plots, in order.
    pub plots: Vec<Plot>,
    /// The plots follow this many sections (the score tables), before the detail tables.
    pub plots_after: usize,
    /// Remarks on the inputs.
    pub notes: Vec<String>,
}

/// A titled table.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Anchor id (`scores`, `normalized`, …).
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// A sentence saying what the numbers are.
    pub text: String,
    /// The table.
    pub table: Table,
}

/// A table of preformatted cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column headings.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
    /// The leading columns that hold labels (left-aligned); the others hold numbers.
    pub label_columns: usize,
}

impl Report {
    /// Builds the report of `summary`, normalized to the variant `baseline` (which must be one
    /// of `summary.variants`).
    pub fn build(summary: &RunSummary, baseline: &VariantSummary) -> Report {
        let m = &summary.manifest;
        let models = m
            .models
            .iter()
            .map(|x| {
                let what: Vec<&str> = [x.backend.as_deref(), x.describe.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect();
                if what.is_empty() {
                    x.name.clone()
                } else {
                    format!("{} ({})", x.name, what.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let t = &m.totals;
        let or_missing = |s: Option<&str>| s.unwrap_or(MISSING).to_string();
        let version = match (&m.longctx_version, &m.git_hash) {
            (Some(v), Some(g)) => format!("{v} ({g})"),
            (v, g) => or_missing(v.as_deref().or(g.as_deref())),
        };
        let header = vec![
            ("Experiment".into(), m.experiment.clone()),
            ("Status".into(), m.status.clone()),
            ("Suite".into(), m.suite.clone()),
            ("Baseline".into(), baseline.name().to_string()),
            ("Config hash".into(), m.config_hash.clone()),
            ("longctx".into(), version),
            ("Models".into(), if models.is_empty() { MISSING.into() } else { models }),
            ("Started".into(), or_missing(m.started_at.as_deref())),
            ("Finished".into(), or_missing(m.finished_at.as_deref())),
            (
                "Totals".into(),
                format!(
                    "{} samples, {} failed, {} prompt tokens, {} completion tokens, ${:.4}",
                    t.samples, t.failed, t.prompt_tokens, t.completion_tokens, t.cost_usd
                ),
            ),
        ];
        let mut sections =
            vec![scores(summary), normalized(summary, baseline), by_bucket(summary), tokens(summary), cost(summary)];
        sections.extend(failed(summary));
        Report {
            title: format!("longctx report: {}", m.experiment),
            header,
            sections,
            plots: plot::plots(summary, baseline),
            plots_after: 2,
            notes: summary.notes.clone(),
        }
    }
}

fn names(summary: &RunSummary) -> Vec<String> {
    summary.variants.iter().map(|v| v.name().to_string()).collect()
}

fn fmt2(x: Option<f64>) -> String {
    x.map_or_else(|| MISSING.into(), |x| format!("{x:.2}"))
}

fn scores(summary: &RunSummary) -> Section {
    let mut rows: Vec<Vec<String>> = summary
        .datasets
        .iter()
        .map(|d| std::iter::once(d.clone()).chain(summary.variants.iter().map(|v| fmt2(v.score(d)))).collect())
        .collect();
    let n = summary.datasets.len();
    rows.push(
        std::iter::once("Average".to_string())
            .chain(summary.variants.iter().map(|v| match summary.average(v) {
                Some((avg, k)) if k == n => format!("{avg:.2}"),
                Some((avg, k)) => format!("{avg:.2} ({k}/{n})"),
                None => MISSING.into(),
            }))
            .collect(),
    );
    let what = match summary.suite {
        Suite::LongBench => "`round(100 × mean, 2)` as LongBench's eval.py reports it (result.json where present)",
        Suite::LongBenchE => "`round(100 × mean, 2)` over all samples (the official per-bucket numbers follow below)",
    };
    Section {
        id: "scores",
        title: "Scores".into(),
        text: format!(
            "Score per dataset and variant: {what}. Average: the mean of the dataset scores \
             (k/n when a variant covers only k of the n datasets)."
        ),
        table: Table { header: prepend("Dataset", names(summary)), rows, label_columns: 1 },
    }
}

fn normalized(summary: &RunSummary, baseline: &VariantSummary) -> Section {
    let per_variant: Vec<Vec<Option<f64>>> = summary.variants.iter().map(|v| summary.normalized(v, baseline)).collect();
    let mut rows: Vec<Vec<String>> = summary
        .datasets
        .iter()
        .enumerate()
        .map(|(i, d)| std::iter::once(d.clone()).chain(per_variant.iter().map(|n| fmt2(n[i]))).collect())
        .collect();
    rows.push(
        std::iter::once("Average".to_string())
            .chain(summary.variants.iter().map(|v| fmt2(summary.normalized_average(v, baseline))))
            .collect(),
    );
    Section {
        id: "normalized",
        title: format!("Scores relative to {}", baseline.name()),
        text: format!(
            "Each score divided by the baseline's ({} = 1.00); {MISSING} where the baseline scores 0 \
             or a score is missing. Average: the mean of the defined ratios.",
            baseline.name()
        ),
        table: Table { header: prepend("Dataset", names(summary)), rows, label_columns: 1 },
    }
}

fn by_bucket(summary: &RunSummary) -> Section {
    let cell = |score: Option<f64>, n: usize| match score {
        Some(s) => format!("{s:.2} (n={n})"),
        None => format!("{MISSING} (n={n})"),
    };
    let mut rows = Vec::new();
    for v in &summary.variants {
        let cells = (0..BUCKETS.len()).map(|b| {
            let scores = v.datasets.values().filter_map(|d| d.buckets[b].score);
            cell(mean(scores), v.datasets.values().map(|d| d.buckets[b].samples).sum())
        });
        rows.push(["All datasets (mean)".to_string(), v.name().to_string()].into_iter().chain(cells).collect());
    }
    for d in &summary.datasets {
        for v in &summary.variants {
            let Some(ds) = v.datasets.get(d) else { continue };
            let cells = ds.buckets.iter().map(|b| cell(b.score, b.samples));
            rows.push([d.clone(), v.name().to_string()].into_iter().chain(cells).collect());
        }
    }
    let what = match summary.suite {
        Suite::LongBenchE => "the official LongBench-E numbers (result.json where present)",
        Suite::LongBench => "computed from the predictions as LongBench-E's eval.py does",
    };
    Section {
        id: "buckets",
        title: "Scores by length bucket".into(),
        text: format!(
            "Score per bucket of LongBench's `length` field (0-4k, 4-8k, 8k+ words or characters): \
             {what}; n is the number of samples. The first rows average the datasets' bucket scores."
        ),
        table: Table {
            header: ["Dataset", "Variant"].into_iter().chain(BUCKETS).map(str::to_string).collect(),
            rows,
            label_columns: 2,
        },
    }
}

fn tokens(summary: &RunSummary) -> Section {
    let rows = summary
        .variants
        .iter()
        .map(|v| {
            let u = v.usage();
            let per = |x: f64| if u.samples == 0 { MISSING.into() } else { format!("{:.1}", x / u.samples as f64) };
            let kept = if u.original_tokens > 0.0 {
                format!("{:.1}%", 100.0 * u.prompt_tokens / u.original_tokens)
            } else {
                MISSING.into()
            };
            vec![
                v.name().to_string(),
                u.samples.to_string(),
                per(u.prompt_tokens),
                per(u.original_tokens),
                kept,
                u.truncated.to_string(),
            ]
        })
        .collect();
    Section {
        id: "tokens",
        title: "Tokens kept".into(),
        text: "Mean tokens the model received (prompt) and of the full prompt (original), over all \
               samples; kept = prompt / original; truncated counts prompts that were cut."
            .into(),
        table: Table {
            header: ["Variant", "Samples", "Mean prompt tokens", "Mean original tokens", "Kept", "Truncated"]
                .map(str::to_string)
                .to_vec(),
            rows,
            label_columns: 1,
        },
    }
}

fn cost(summary: &RunSummary) -> Section {
    let rows = summary
        .variants
        .iter()
        .map(|v| {
            let u = v.usage();
            let per = |x: f64, decimals: usize| {
                if u.samples == 0 {
                    MISSING.into()
                } else {
                    format!("{:.*}", decimals, x / u.samples as f64)
                }
            };
            vec![
                v.name().to_string(),
                per(u.cost_usd, 6),
                format!("{:.4}", u.cost_usd),
                per(u.latency_s, 2),
                per(u.completion_tokens, 1),
            ]
        })
        .collect();
    Section {
        id: "cost",
        title: "Cost and latency".into(),
        text: "Cost per query in US dollars (generation plus retrieval and reranking), total cost, \
               mean latency and mean completion tokens per sample."
            .into(),
        table: Table {
            header: ["Variant", "Cost / query (USD)", "Total cost (USD)", "Mean latency (s)", "Mean completion tokens"]
                .map(str::to_string)
                .to_vec(),
            rows,
            label_columns: 1,
        },
    }
}

fn failed(summary: &RunSummary) -> Option<Section> {
    let rows: Vec<Vec<String>> = summary
        .variants
        .iter()
        .flat_map(|v| {
            v.failed.iter().map(|(d, f)| {
                let mut error: String = f.first_error.chars().take(160).collect();
                if error.len() < f.first_error.len() {
                    error.push('…');
                }
                vec![v.name().to_string(), d.clone(), error, f.count.to_string()]
            })
        })
        .collect();
    (!rows.is_empty()).then(|| Section {
        id: "failed",
        title: "Failed samples".into(),
        text: "Samples that failed (they are not scored), with the first error of each dataset.".into(),
        table: Table {
            header: ["Variant", "Dataset", "First error", "Failed"].map(str::to_string).to_vec(),
            rows,
            label_columns: 3,
        },
    })
}

fn prepend(first: &str, rest: Vec<String>) -> Vec<String> {
    std::iter::once(first.to_string()).chain(rest).collect()
}
