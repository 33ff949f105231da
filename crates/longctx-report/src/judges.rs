//! The judges' part of a report, from `RUN_DIR/judgements.json` (written by `longctx judge` and
//! by `longctx run` with `[[judge]]`s): per variant and judge the mean rating (1–10), the
//! official total and cost per item, the means per prompt-length bucket, the agreement of each
//! two judges (Spearman ρ, Kendall τ-b, quadratic κ, mean |Δ|, share within one point), a bar
//! plot of the means and a heatmap of judge A's ratings against judge B's. A LongBench-Chat run's
//! report is this alone.

use std::path::Path;

use serde_json::Value;

use crate::manifest::Manifest;
use crate::plot::{heatmap, Plot, PlotKind};
use crate::report::{Report, Section, Table, MISSING};
use crate::{Error, Result};

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| MISSING.to_string(), |x| format!("{x:.digits$}"))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Reads `judgements.json`, if the run has one.
pub fn load(run_dir: &Path) -> Result<Option<Value>> {
    let path = run_dir.join("judgements.json");
    if !path.is_file() {
        return Ok(None);
    }
    let s = fs_err::read_to_string(&path)?;
    let v: Value = serde_json::from_str(&s)
        .map_err(|e| Error::Manifest { path: path.clone(), message: format!("not a judgements summary: {e}") })?;
    Ok(Some(v))
}

/// The sections and plots of the judges' summary `j`.
pub fn views(j: &Value) -> (Vec<Section>, Vec<Plot>) {
    let judges: Vec<String> = j["judges"].as_array().into_iter().flatten().map(|x| text(&x["name"])).collect();
    let scores: &[Value] = j["scores"].as_array().map_or(&[], Vec::as_slice);
    let mut datasets: Vec<String> = scores.iter().map(|s| text(&s["dataset"])).collect();
    datasets.dedup();
    let mut sections = score_sections(scores, datasets.len() > 1);
    let agreement: &[Value] = j["agreement"].as_array().map_or(&[], Vec::as_slice);
    if !agreement.is_empty() {
        sections.push(agreement_section(agreement));
    }
    let mut plots = mean_plots(scores, &datasets, &judges);
    let ratings: &[Value] = j["ratings"].as_array().map_or(&[], Vec::as_slice);
    plots.extend(pair_heatmaps(ratings, &judges));
    (sections, plots)
}

/// The scores table, and the means per prompt-length bucket when there are several.
fn score_sections(scores: &[Value], with_dataset: bool) -> Vec<Section> {
    let mut header: Vec<String> = vec!["Variant".into()];
    if with_dataset {
        header.push("Dataset".into());
    }
    header.extend(["Judge", "Mean (1–10)", "Total", "Rated", "Unparsed", "Pending", "Cost / item"].map(String::from));
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            let mut row = vec![text(&s["variant"])];
            if with_dataset {
                row.push(text(&s["dataset"]));
            }
            row.extend([
                text(&s["judge"]),
                num(&s["mean"], 2),
                num(&s["total"], 1),
                format!("{}/{}", s["rated"].as_u64().unwrap_or(0), s["items"].as_u64().unwrap_or(0)),
                s["unparsed"].as_u64().unwrap_or(0).to_string(),
                s["pending"].as_u64().unwrap_or(0).to_string(),
                s["cost_per_item_usd"].as_f64().map_or_else(|| MISSING.into(), |c| format!("${c:.5}")),
            ]);
            row
        })
        .collect();
    let label_columns = if with_dataset { 3 } else { 2 };
    let mut sections = vec![Section {
        id: "judges",
        title: "LLM judges".into(),
        text: "Ratings 1–10 as LongBench-Chat's eval.py asks for them (the last [[…]] of the reply, up to five tries). The total is the sum over the items, as the official script reports it (0–500 on its 50 cases), and is absent while an item is unparsed; pending items await a judge that could not be reached.".into(),
        table: Table { header, rows, label_columns },
    }];

    // Means per bucket.
    let present: Vec<&str> = longctx_bench::chat::LENGTH_BUCKETS
        .iter()
        .copied()
        .filter(|b| scores.iter().any(|s| s["buckets"].get(*b).is_some()))
        .collect();
    if present.len() > 1 {
        let mut header: Vec<String> = vec!["Variant".into()];
        if with_dataset {
            header.push("Dataset".into());
        }
        header.push("Judge".into());
        header.extend(present.iter().map(|b| format!("{b} tokens")));
        let rows = scores
            .iter()
            .map(|s| {
                let mut row = vec![text(&s["variant"])];
                if with_dataset {
                    row.push(text(&s["dataset"]));
                }
                row.push(text(&s["judge"]));
                row.extend(present.iter().map(|b| {
                    let c = &s["buckets"][*b];
                    if c.is_null() {
                        MISSING.to_string()
                    } else {
                        format!("{} ({})", num(&c["mean"], 2), c["cases"].as_u64().unwrap_or(0))
                    }
                }));
                row
            })
            .collect();
        sections.push(Section {
            id: "judges-by-length",
            title: "Mean rating by prompt length".into(),
            text: "Mean rating per bucket of the prompt's length in the model's tokens (items in parentheses).".into(),
            table: Table { header, rows, label_columns },
        });
    }
    sections
}

/// The agreement table.
fn agreement_section(agreement: &[Value]) -> Section {
    let header = [
        "Judge A",
        "Judge B",
        "Prompt length",
        "Pairs",
        "Spearman ρ",
        "Kendall τ-b",
        "Quadratic κ",
        "Mean |Δ|",
        "Within 1",
    ]
    .map(String::from)
    .to_vec();
    let rows = agreement
        .iter()
        .map(|a| {
            vec![
                text(&a["a"]),
                text(&a["b"]),
                text(&a["bucket"]),
                a["pairs"].as_u64().unwrap_or(0).to_string(),
                num(&a["spearman"], 3),
                num(&a["kendall_tau_b"], 3),
                num(&a["quadratic_kappa"], 3),
                num(&a["mean_abs_diff"], 2),
                a["share_within_1"].as_f64().map_or_else(|| MISSING.into(), |s| format!("{:.1}%", 100.0 * s)),
            ]
        })
        .collect();
    Section {
            id: "judge-agreement",
            title: "Agreement between judges".into(),
            text: "Over the items both judges rated: Spearman's ρ and Kendall's τ-b (scipy's), Cohen's κ with quadratic weights on the ratings rounded to integers (scikit-learn's), the mean absolute difference and the share of items rated within one point. – where undefined (fewer than two pairs, or a judge that gave one rating to all).".into(),
            table: Table { header, rows, label_columns: 3 },
        }
}

/// Mean rating per variant, one bar per judge, a plot per dataset.
fn mean_plots(scores: &[Value], datasets: &[String], judges: &[String]) -> Vec<Plot> {
    let mut plots = Vec::new();
    for d in datasets {
        let of_d: Vec<&Value> = scores.iter().filter(|s| &text(&s["dataset"]) == d).collect();
        let mut variants: Vec<String> = of_d.iter().map(|s| text(&s["variant"])).collect();
        variants.dedup();
        let series = judges
            .iter()
            .map(|judge| {
                let values = variants
                    .iter()
                    .map(|v| {
                        of_d.iter()
                            .find(|s| &text(&s["variant"]) == v && &text(&s["judge"]) == judge)
                            .and_then(|s| s["mean"].as_f64())
                    })
                    .collect();
                (judge.clone(), values)
            })
            .collect();
        plots.push(Plot {
            name: format!("judges-{d}"),
            title: format!("{d}: mean rating by judge"),
            x_label: "variant".into(),
            y_label: "mean rating (1–10)".into(),
            reference: None,
            kind: PlotKind::Bars { categories: variants, series },
        });
    }
    plots
}

/// Judge A vs judge B: the share of items at each pair of (rounded) ratings, per pair of judges.
fn pair_heatmaps(ratings: &[Value], judges: &[String]) -> Vec<Plot> {
    let mut plots = Vec::new();
    for (ia, a) in judges.iter().enumerate() {
        for b in &judges[ia + 1..] {
            let mut counts = [[0u64; 10]; 10];
            let mut n = 0u64;
            for r in ratings {
                let (Some(x), Some(y)) = (r["ratings"][a].as_f64(), r["ratings"][b].as_f64()) else { continue };
                let cell = |v: f64| (v.round().clamp(1.0, 10.0) as usize) - 1;
                counts[9 - cell(x)][cell(y)] += 1;
                n += 1;
            }
            if n == 0 {
                continue;
            }
            let values = counts
                .iter()
                .map(|row| row.iter().map(|&c| (c > 0).then(|| 100.0 * c as f64 / n as f64)).collect())
                .collect();
            plots.push(heatmap(
                &format!("judges-{a}-vs-{b}"),
                &format!("{a} vs {b}: % of {n} items at each pair of ratings"),
                &format!("{b}'s rating"),
                &format!("{a}'s rating"),
                (1..=10).map(|r| r.to_string()).collect(),
                (1..=10).rev().map(|r| r.to_string()).collect(),
                values,
                (0.0, 25.0),
            ));
        }
    }
    plots
}

/// The report of a LongBench-Chat run: the judges' tables and plots, or a note that the run
/// has not been judged yet.
pub fn build(run_dir: &Path, manifest: &Manifest) -> Result<Report> {
    let (sections, plots, notes) = match load(run_dir)? {
        Some(j) => {
            let (s, p) = views(&j);
            (s, p, Vec::new())
        }
        None => (
            Vec::new(),
            Vec::new(),
            vec!["No judgements yet: add [[judge]] entries to the experiment, or run `longctx judge RUN_DIR --judges FILE`.".to_string()],
        ),
    };
    let header = crate::ruler::run_header(manifest);
    let plots_after = sections.len();
    Ok(Report {
        title: format!("longctx report: {}", manifest.experiment),
        header,
        sections,
        plots,
        plots_after,
        notes,
    })
}
