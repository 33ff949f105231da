//! Reports of longctx runs: turns a run directory into tables of scores normalized to a
//! baseline variant, scores per length bucket, tokens kept, cost and latency, plots, a
//! Markdown file and one self-contained HTML page.
//!
//! # Input: a run directory (as `longctx run` writes it)
//!
//! ```text
//! RUN_DIR/manifest.json                     run manifest, schema version 1 (see [`Manifest`])
//! RUN_DIR/<variant>/<dataset>.jsonl         predictions, one JSON object per line
//! RUN_DIR/<variant>/result.json             LongBench eval.py scores (optional)
//! RUN_DIR/<variant>/failed/<dataset>.jsonl  failed samples, {"id", "dataset", "error"} (optional)
//! RUN_DIR/judgements.json                   LLM judges' ratings and agreement (optional; see [`judges`])
//! ```
//!
//! Prediction lines need LongBench's keys `pred`, `answers`, `all_classes` and `length`;
//! longctx's `prompt_tokens`, `original_tokens`, `completion_tokens`, `latency_s`, `cost_usd`
//! and `truncated` count 0 when absent, so prediction files of other tools work too. Scores
//! come from each variant's `result.json`; where it is missing (an interrupted run) they are
//! computed with `longctx-bench`'s scorer, which reproduces eval.py exactly.
//!
//! # Output (`RUN_DIR/report/` by default)
//!
//! ```text
//! report.md      header, tables, plots linked as plots/*.png, notes
//! report.html    the same, self-contained: inline CSS, plots as inline SVG
//! plots/*.png    each plot as PNG (text drawn with the embedded Roboto font)
//! plots/*.svg    and as SVG
//! ```
//!
//! The output is deterministic: the only times in it are the manifest's.
//!
//! ```
//! use longctx_report::{write_report, ReportOptions};
//!
//! let run = tempfile::tempdir()?;
//! std::fs::write(
//!     run.path().join("manifest.json"),
//!     r#"{"schema_version": 1, "experiment": "demo", "datasets": ["qasper"],
//!         "variants": [{"name": "full"}, {"name": "truncate"}]}"#,
//! )?;
//! for (variant, pred) in [("full", "forty two"), ("truncate", "no idea")] {
//!     std::fs::create_dir(run.path().join(variant))?;
//!     let line = format!(r#"{{"pred": "{pred}", "answers": ["forty two"], "all_classes": null, "length": 5000}}"#);
//!     std::fs::write(run.path().join(variant).join("qasper.jsonl"), line)?;
//! }
//! let paths = write_report(run.path(), &ReportOptions::default())?;
//! let md = std::fs::read_to_string(&paths.markdown)?;
//! assert!(md.contains("| qasper | 100.00 | 0.00 |"));
//! assert!(paths.html.ends_with("report/report.html"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod glyphs;
pub mod judges;
pub mod manifest;
pub mod plot;
pub mod render;
pub mod report;
pub mod ruler;
pub mod summary;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use manifest::Manifest;
pub use report::Report;
pub use summary::RunSummary;

/// What [`write_report`] writes where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// The output directory; default `RUN_DIR/report`.
    pub out_dir: Option<PathBuf>,
    /// The variant scores are normalized to; default the manifest's `baseline`, else the
    /// first variant.
    pub baseline: Option<String>,
}

/// The files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// The plots: for each, its PNG then its SVG file.
    pub plots: Vec<PathBuf>,
}

/// Reads the run directory `run_dir` and writes its report (Markdown, HTML, plots).
pub fn write_report(run_dir: &Path, options: &ReportOptions) -> Result<ReportPaths> {
    let manifest = Manifest::load(&run_dir.join("manifest.json"))?;
    let report = if manifest.suite == "ruler" {
        ruler::build(run_dir, &manifest)?
    } else if manifest.suite == "longbench-chat" {
        judges::build(run_dir, &manifest)?
    } else {
        let summary = RunSummary::load(run_dir)?;
        let baseline = summary.baseline(options.baseline.as_deref())?;
        let mut report = Report::build(&summary, baseline);
        // Judges of the open-ended tasks (`longctx judge`), after the score tables.
        if let Some(j) = judges::load(run_dir)? {
            let (sections, plots) = judges::views(&j);
            report.sections.extend(sections);
            report.plots.extend(plots);
        }
        report
    };
    let out = options.out_dir.clone().unwrap_or_else(|| run_dir.join("report"));
    let plot_dir = out.join("plots");
    fs_err::create_dir_all(&plot_dir)?;
    let mut plots = Vec::with_capacity(2 * report.plots.len());
    let mut svgs = Vec::with_capacity(report.plots.len());
    for plot in &report.plots {
        let svg = plot.svg()?;
        let png_path = plot_dir.join(format!("{}.png", plot.name));
        let svg_path = plot_dir.join(format!("{}.svg", plot.name));
        fs_err::write(&png_path, plot.png()?)?;
        fs_err::write(&svg_path, &svg)?;
        plots.extend([png_path, svg_path]);
        svgs.push(svg);
    }
    let markdown = out.join("report.md");
    fs_err::write(&markdown, render::markdown(&report))?;
    let html = out.join("report.html");
    fs_err::write(&html, render::html(&report, &svgs))?;
    Ok(ReportPaths { markdown, html, plots })
}
