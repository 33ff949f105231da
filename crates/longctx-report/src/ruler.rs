//! The report of a RULER run: a table shaped like RULER's README (claimed length, effective
//! length, score per length, average, wAvg inc/dec) with one row per variant, a task × length
//! table per variant, the needle depth × length table and heatmap (lost in the middle), and
//! the average score by length as a plot.

use std::path::Path;

use longctx_bench::ruler::score::{score_dir, RulerResult};
use longctx_bench::ruler::DEFAULT_THRESHOLD;

use crate::manifest::Manifest;
use crate::plot::{heatmap, Plot, PlotKind};
use crate::report::{Report, Section, Table, MISSING};
use crate::Result;

/// A length as RULER's README writes it (`4K`, `128K`, `1.5K`, `900`).
pub fn length_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n / 1024)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn fmt1(x: Option<f64>) -> String {
    x.map_or_else(|| MISSING.into(), |x| format!("{x:.1}"))
}

/// Scores every variant of a RULER run from its predictions.
pub fn results(run_dir: &Path, manifest: &Manifest) -> Result<Vec<(String, Option<String>, RulerResult)>> {
    let threshold = manifest.config["benchmark"]["threshold"].as_f64().unwrap_or(DEFAULT_THRESHOLD);
    let mut out = Vec::new();
    for v in &manifest.variants {
        let dir = run_dir.join(&v.name);
        if !dir.is_dir() {
            continue;
        }
        match score_dir(&dir, threshold) {
            Ok(r) => out.push((v.name.clone(), v.model.clone(), r)),
            Err(longctx_bench::Error::NoPredictionFiles { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Builds the report of a RULER run.
pub fn build(run_dir: &Path, manifest: &Manifest) -> Result<Report> {
    let results = results(run_dir, manifest)?;
    let threshold = results.first().map_or(DEFAULT_THRESHOLD, |r| r.2.threshold);
    let mut lengths: Vec<usize> = results.iter().flat_map(|r| r.2.lengths.iter().copied()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let claimed = |model: Option<&String>| {
        manifest
            .models
            .iter()
            .find(|m| Some(&m.name) == model || manifest.models.len() == 1)
            .and_then(|m| m.window)
            .map_or_else(|| MISSING.to_string(), length_label)
    };
    let mut header = vec!["Variant".to_string(), "Claimed length".into(), "Effective length".into()];
    header.extend(lengths.iter().map(|&l| length_label(l)));
    header.extend(["Avg.".into(), "wAvg. (inc)".into(), "wAvg. (dec)".into()]);
    let rows = results
        .iter()
        .map(|(name, model, r)| {
            let mut row = vec![
                name.clone(),
                claimed(model.as_ref()),
                r.effective_length.map_or_else(|| format!("< {}", length_label(r.lengths[0])), length_label),
            ];
            row.extend(lengths.iter().map(|l| fmt1(r.lengths.iter().position(|x| x == l).and_then(|i| r.average[i]))));
            row.extend([fmt1(r.avg), fmt1(r.wavg_inc), fmt1(r.wavg_dec)]);
            row
        })
        .collect();
    let mut sections = vec![Section {
        id: "ruler",
        title: "RULER".into(),
        text: format!(
            "Average of the task scores per length (RULER's string match, 0–100). The effective length is the longest length whose average reaches {threshold}; wAvg weighs the lengths 1…n (inc) or n…1 (dec)."
        ),
        table: Table { header, rows, label_columns: 1 },
    }];
    let mut plots = Vec::new();
    if !results.is_empty() {
        plots.push(Plot {
            name: "ruler-by-length".into(),
            title: "RULER: average score by length".into(),
            x_label: "length (tokens)".into(),
            y_label: "average score".into(),
            reference: Some((format!("threshold {threshold}"), threshold)),
            kind: PlotKind::Lines {
                log_x: true,
                lines: results
                    .iter()
                    .map(|(name, _, r)| {
                        let points =
                            r.lengths.iter().zip(&r.average).filter_map(|(l, a)| a.map(|a| (*l as f64, a))).collect();
                        (name.clone(), points)
                    })
                    .collect(),
            },
        });
    }
    for (name, _, r) in &results {
        let (views, heatmap) = variant_views(name, r);
        sections.extend(views);
        plots.extend(heatmap);
    }
    let header = run_header(manifest);
    Ok(Report {
        title: format!("longctx report: {}", manifest.experiment),
        header,
        sections,
        plots,
        plots_after: 1,
        notes: Vec::new(),
    })
}

/// The report header of a run: experiment, status, suite, config hash, models, times, totals.
pub(crate) fn run_header(manifest: &Manifest) -> Vec<(String, String)> {
    let t = &manifest.totals;
    vec![
        ("Experiment".into(), manifest.experiment.clone()),
        ("Status".into(), manifest.status.clone()),
        ("Suite".into(), manifest.suite.clone()),
        ("Config hash".into(), manifest.config_hash.clone()),
        (
            "Models".into(),
            manifest
                .models
                .iter()
                .map(|m| m.describe.clone().unwrap_or_else(|| m.name.clone()))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("Started".into(), manifest.started_at.clone().unwrap_or_else(|| MISSING.into())),
        ("Finished".into(), manifest.finished_at.clone().unwrap_or_else(|| MISSING.into())),
        (
            "Totals".into(),
            format!(
                "{} samples, {} failed, {} prompt tokens, {} completion tokens, ${:.4}",
                t.samples, t.failed, t.prompt_tokens, t.completion_tokens, t.cost_usd
            ),
        ),
    ]
}

/// One variant's task × length table and, when it swept needle depths, its depth × length
/// table and heatmap.
fn variant_views(name: &str, r: &RulerResult) -> (Vec<Section>, Option<Plot>) {
    let mut header = vec!["Task".to_string()];
    header.extend(r.lengths.iter().map(|&l| length_label(l)));
    let mut rows: Vec<Vec<String>> = r
        .tasks
        .iter()
        .map(|t| {
            let mut row = vec![t.clone()];
            row.extend(r.lengths.iter().map(|l| {
                r.scores.get(t).and_then(|m| m.get(l)).map_or_else(|| MISSING.into(), |s| format!("{:.2}", s.score))
            }));
            row
        })
        .collect();
    let mut avg = vec!["average".to_string()];
    avg.extend(r.average.iter().map(|a| a.map_or_else(|| MISSING.into(), |a| format!("{a:.2}"))));
    rows.push(avg);
    let mut sections = vec![Section {
        id: "ruler-tasks",
        title: format!("{name}: task × length"),
        text: "RULER's score of each task at each length (string_match_all; qa: string_match_part).".into(),
        table: Table { header, rows, label_columns: 1 },
    }];
    if r.depth.is_empty() {
        return (sections, None);
    }
    let mut depths: Vec<f64> = r.depth.iter().map(|c| c.depth).collect();
    depths.sort_by(f64::total_cmp);
    depths.dedup();
    let cell = |d: f64, l: usize| r.depth.iter().find(|c| c.depth == d && c.length == l);
    let mut header = vec!["Depth".to_string()];
    header.extend(r.lengths.iter().map(|&l| length_label(l)));
    let rows = depths
        .iter()
        .map(|&d| {
            let mut row = vec![format!("{d:.0} %")];
            row.extend(
                r.lengths
                    .iter()
                    .map(|&l| cell(d, l).map_or_else(|| MISSING.into(), |c| format!("{:.1} ({})", c.score, c.n))),
            );
            row
        })
        .collect();
    sections.push(Section {
        id: "ruler-depth",
        title: format!("{name}: needle depth × length"),
        text: "Single-needle tasks (niah_single_*) pooled: the share of needles retrieved (0–100) by where the needle sits in the context and by length; samples per cell in parentheses.".into(),
        table: Table { header, rows, label_columns: 1 },
    });
    let plot = heatmap(
        &format!("depth-{name}"),
        &format!("{name}: needle retrieval by depth and length"),
        "length (tokens)",
        "needle depth",
        r.lengths.iter().map(|&l| length_label(l)).collect(),
        depths.iter().map(|d| format!("{d:.0}%")).collect(),
        depths.iter().map(|&d| r.lengths.iter().map(|&l| cell(d, l).map(|c| c.score)).collect()).collect(),
        (0.0, 100.0),
    );
    (sections, Some(plot))
}

#[cfg(test)]
mod tests {
    use super::length_label;

    #[test]
    fn lengths_as_ruler_writes_them() {
        assert_eq!(length_label(4096), "4K");
        assert_eq!(length_label(131_072), "128K");
        assert_eq!(length_label(1000), "1k");
        assert_eq!(length_label(900), "900");
    }
}
