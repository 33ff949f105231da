//! The report's plots, drawn with plotters to SVG (text as `<text>` elements) and to PNG (text
//! rasterized with the embedded Roboto font, so no system font is needed).
//!
//! Each plot has a legend in its own column to the right of the chart, so that it never
//! covers data (a heatmap's legend is its colour bar); bar charts grow wider with the number
//! of bars, heatmaps with their number of columns and rows.

use std::ops::Range;
use std::sync::OnceLock;

use ab_glyph::FontRef;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::glyphs::GlyphText;
use crate::summary::{RunSummary, Usage, VariantSummary};

/// Roboto Regular (Apache-2.0, see `assets/README.md`).
static FONT: &[u8] = include_bytes!("../assets/Roboto-Regular.ttf");

/// The font family every text of the plots uses; the embedded font is registered under it.
const FAMILY: &str = "sans-serif";

/// Tableau 10, the colours of the series in order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const GRID: RGBColor = RGBColor(225, 225, 225);

/// A heatmap's colour scale: the bottom of its range, the middle and the top (ColorBrewer's
/// RdYlGn), interpolated linearly in RGB.
const SCALE_LOW: RGBColor = RGBColor(215, 48, 39);
const SCALE_MID: RGBColor = RGBColor(254, 224, 139);
const SCALE_HIGH: RGBColor = RGBColor(26, 152, 80);

/// A heatmap cell without data, and its "–".
const MISSING: RGBColor = RGBColor(217, 217, 217);
const MISSING_INK: RGBColor = RGBColor(90, 90, 90);

/// The smallest heatmap cell in pixels.
const MIN_CELL: (usize, usize) = (60, 28);

/// Pixels of a heatmap's height that are not cells: margins, title, x-axis labels.
const HEATMAP_CHROME: usize = 130;

/// One plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// File stem (`scores-by-dataset`, `sweep-rag`, …).
    pub name: String,
    /// Title drawn above the chart.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// A dashed horizontal reference line: `(legend label, y)`; heatmaps ignore it.
    pub reference: Option<(String, f64)>,
    /// What is drawn.
    pub kind: PlotKind,
}

/// The kinds of plot a report has.
#[derive(Debug, Clone, PartialEq)]
pub enum PlotKind {
    /// Lines over a numeric x (a parameter sweep); `log_x` puts x on a log scale.
    Lines {
        /// Logarithmic x axis.
        log_x: bool,
        /// `(label, points)` per line; points sorted by x.
        lines: Vec<(String, Vec<(f64, f64)>)>,
    },
    /// Grouped bars: one group per category, one bar per series (`None`: no bar).
    Bars {
        /// Category labels on x.
        categories: Vec<String>,
        /// `(label, one value per category)` per series.
        series: Vec<(String, Vec<Option<f64>>)>,
    },
    /// A grid of cells coloured by value, red (low) through yellow to green (high), each
    /// labelled with its value (RULER's score by needle depth × context length).
    Heatmap {
        /// Column labels, along x from left to right.
        columns: Vec<String>,
        /// Row labels, along y from top to bottom.
        rows: Vec<String>,
        /// `values[row][column]`; `None` (or a missing or NaN entry): no data, a grey cell
        /// labelled "–".
        values: Vec<Vec<Option<f64>>>,
        /// The values at the two ends of the colour scale, `(low, high)`; values beyond it
        /// are clamped.
        range: (f64, f64),
    },
}

/// The plots of a report: a sweep plot per k-sweep group, scores per dataset, tokens kept,
/// and cost per query when any variant cost anything.
pub fn plots(summary: &RunSummary, baseline: &VariantSummary) -> Vec<Plot> {
    // Normalize when the baseline scores above 0 somewhere; else show raw scores.
    let normalize = summary.datasets.iter().any(|d| baseline.score(d).is_some_and(|s| s > 0.0));
    let (score_label, reference) = if normalize {
        (format!("score / {}", baseline.name()), Some((format!("{} (baseline)", baseline.name()), 1.0)))
    } else {
        ("score".to_string(), None)
    };
    let relative = if normalize { format!("score relative to {}", baseline.name()) } else { "mean score".into() };
    let mut plots = Vec::new();
    for sweep in summary.sweeps() {
        let points = sweep
            .points
            .iter()
            .filter_map(|&(x, i)| {
                let v = &summary.variants[i];
                let y =
                    if normalize { summary.normalized_average(v, baseline) } else { summary.average(v).map(|a| a.0) };
                y.map(|y| (x, y))
            })
            .collect::<Vec<_>>();
        let (lo, hi) = (sweep.points[0].0, sweep.points[sweep.points.len() - 1].0);
        plots.push(Plot {
            name: format!("sweep-{}", file_stem(&sweep.group)),
            title: format!("{}: {relative} vs {}", sweep.group, sweep.param),
            x_label: sweep.param.clone(),
            y_label: format!("mean {score_label} over datasets"),
            reference: reference.clone(),
            kind: PlotKind::Lines { log_x: lo > 0.0 && hi / lo >= 10.0, lines: vec![(sweep.group.clone(), points)] },
        });
    }
    let series = summary
        .variants
        .iter()
        .map(|v| {
            let values = if normalize {
                summary.normalized(v, baseline)
            } else {
                summary.datasets.iter().map(|d| v.score(d)).collect()
            };
            (v.name().to_string(), values)
        })
        .collect();
    plots.push(Plot {
        name: "scores-by-dataset".into(),
        title: if normalize {
            format!("Score relative to {} per dataset", baseline.name())
        } else {
            "Score per dataset".into()
        },
        x_label: "dataset".into(),
        y_label: score_label,
        reference,
        kind: PlotKind::Bars { categories: summary.datasets.clone(), series },
    });
    let variants: Vec<String> = summary.variants.iter().map(|v| v.name().to_string()).collect();
    let per_sample = |f: fn(&Usage) -> f64| -> Vec<Option<f64>> {
        summary
            .variants
            .iter()
            .map(|v| {
                let u = v.usage();
                (u.samples > 0).then(|| f(&u) / u.samples as f64)
            })
            .collect()
    };
    plots.push(Plot {
        name: "tokens-kept".into(),
        title: "Tokens per query: kept (prompt) vs original".into(),
        x_label: "variant".into(),
        y_label: "mean tokens per sample".into(),
        reference: None,
        kind: PlotKind::Bars {
            categories: variants.clone(),
            series: vec![
                ("prompt tokens".into(), per_sample(|u| u.prompt_tokens)),
                ("original tokens".into(), per_sample(|u| u.original_tokens)),
            ],
        },
    });
    if summary.variants.iter().any(|v| v.usage().cost_usd > 0.0) {
        plots.push(Plot {
            name: "cost-per-query".into(),
            title: "Cost per query".into(),
            x_label: "variant".into(),
            y_label: "mean cost per sample (USD)".into(),
            reference: None,
            kind: PlotKind::Bars { categories: variants, series: vec![("cost".into(), per_sample(|u| u.cost_usd))] },
        });
    }
    plots
}

/// The loss curve of a training run: `points` are `(step, loss)`; `smoothed` (a moving
/// average, when there are enough steps) is drawn as a second line.
pub fn loss_curve(title: &str, points: Vec<(f64, f64)>) -> Plot {
    let mut lines = vec![("loss".to_string(), points.clone())];
    let window = (points.len() / 20).max(1);
    if window > 1 {
        let smoothed = points
            .iter()
            .enumerate()
            .map(|(i, &(x, _))| {
                let lo = i.saturating_sub(window - 1);
                let mean = points[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64;
                (x, mean)
            })
            .collect();
        lines.push((format!("moving average ({window} steps)"), smoothed));
    }
    Plot {
        name: "loss".into(),
        title: title.to_string(),
        x_label: "optimizer step".into(),
        y_label: "training loss".into(),
        reference: None,
        kind: PlotKind::Lines { log_x: false, lines },
    }
}

/// Perplexity against context length, one line per variant (`series`: name and
/// `(length, perplexity)` points), length on a log scale.
pub fn perplexity_by_length(title: &str, series: Vec<(String, Vec<(f64, f64)>)>) -> Plot {
    Plot {
        name: "perplexity-by-length".into(),
        title: title.to_string(),
        x_label: "context length (tokens)".into(),
        y_label: "perplexity".into(),
        reference: None,
        kind: PlotKind::Lines { log_x: true, lines: series },
    }
}

/// A heatmap (see [`PlotKind::Heatmap`]): `columns` along x, `rows` along y with the first
/// at the top, `values[row][column]` coloured over `range` (`(low, high)`). `name` is the
/// file stem, reduced to `[A-Za-z0-9_-]`.
///
/// ```
/// let plot = longctx_report::plot::heatmap(
///     "ruler-depth",
///     "RULER: score by needle depth and context length",
///     "context length",
///     "needle depth",
///     vec!["1k".into(), "2k".into()],
///     vec!["0%".into(), "50%".into(), "100%".into()],
///     vec![vec![Some(100.0), Some(87.5)], vec![Some(62.5), None], vec![Some(100.0), Some(75.0)]],
///     (0.0, 100.0),
/// );
/// assert!(plot.svg()?.contains("87.5"));
/// # Ok::<(), longctx_report::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn heatmap(
    name: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    columns: Vec<String>,
    rows: Vec<String>,
    values: Vec<Vec<Option<f64>>>,
    range: (f64, f64),
) -> Plot {
    Plot {
        name: file_stem(name),
        title: title.to_string(),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        reference: None,
        kind: PlotKind::Heatmap { columns, rows, values, range },
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw` (a readable tick spacing).
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(10.0 * power)
}

/// A name reduced to `[A-Za-z0-9_-]` for use in a file name.
fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Plot {
    /// The size in pixels: bar charts widen with their number of bars and label lengths,
    /// heatmaps grow with their number of columns and rows (cells at least 60 × 28).
    pub fn size(&self) -> (u32, u32) {
        let (width, height) = match &self.kind {
            PlotKind::Lines { .. } => (900, 480),
            PlotKind::Bars { categories, series } => {
                let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
                let group = (series.len() * 22 + 24).max(longest * 8 + 16);
                ((160 + legend_width(self) + categories.len() * group).max(900), 480)
            }
            PlotKind::Heatmap { columns, rows, values, .. } => {
                let (cell_w, cell_h) = heatmap_cell(columns, values);
                let width = 24 + heatmap_y_label_area(rows) + legend_width(self) + columns.len() * cell_w;
                (width.max(900), (HEATMAP_CHROME + rows.len() * cell_h).max(480))
            }
        };
        (u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX))
    }

    /// The plot as an SVG document.
    pub fn svg(&self) -> Result<String> {
        font()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| self.error(&e))?;
            root.present().map_err(|e| self.error(&e))?;
        }
        Ok(svg)
    }

    /// The plot as a PNG file (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>> {
        let font = font()?;
        let (w, h) = self.size();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let bitmap = BitMapBackend::with_buffer(&mut rgb, (w, h));
            let root = GlyphText { inner: bitmap, font }.into_drawing_area();
            self.draw(&root).map_err(|e| self.error(&e))?;
            root.present().map_err(|e| self.error(&e))?;
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| self.error(&e))?;
        writer.write_image_data(&rgb).map_err(|e| self.error(&e))?;
        writer.finish().map_err(|e| self.error(&e))?;
        Ok(out)
    }

    fn error(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Plot { plot: self.name.clone(), message: e.to_string() }
    }

    /// The legend's entries; none for a heatmap, whose legend is its colour bar.
    fn legend(&self) -> Vec<(String, RGBColor, Swatch)> {
        let (labels, swatch): (Vec<&String>, _) = match &self.kind {
            PlotKind::Lines { lines, .. } => (lines.iter().map(|l| &l.0).collect(), Swatch::Line),
            PlotKind::Bars { series, .. } => (series.iter().map(|s| &s.0).collect(), Swatch::Bar),
            PlotKind::Heatmap { .. } => return Vec::new(),
        };
        let mut entries: Vec<_> =
            labels.into_iter().enumerate().map(|(i, l)| (l.clone(), PALETTE[i % PALETTE.len()], swatch)).collect();
        if let Some((label, _)) = &self.reference {
            entries.push((label.clone(), BLACK, Swatch::Dashed));
        }
        entries
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let root = root.margin(10, 0, 0, 0).titled(&self.title, (FAMILY, 22))?;
        let (w, _) = root.dim_in_pixel();
        let (chart_area, legend_area) = root.split_horizontally(w - legend_width(self) as u32);
        draw_legend(&legend_area, &self.legend())?;
        let label = (FAMILY, 15);
        let y_max = self.y_max();
        match &self.kind {
            PlotKind::Lines { log_x, lines } => {
                let t = |x: f64| if *log_x { x.log10() } else { x };
                let xs: Vec<f64> = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)).collect();
                let (lo, hi) =
                    xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(t(x)), b.max(t(x))));
                let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
                let pad = ((hi - lo) * 0.08).max(0.1);
                // A sweep has a few points, each labelled with its value and a tick of its own;
                // a long series (a loss curve) is a plain line over about ten ticks.
                let dense = lines.iter().any(|l| l.1.len() > 20);
                let mut ticks: Vec<f64> = if dense {
                    let step = nice_step((hi - lo) / 10.0);
                    let first = (lo / step).ceil() as i64;
                    let last = (hi / step).floor() as i64;
                    (first..=last).map(|k| k as f64 * step).collect()
                } else {
                    xs.iter().map(|&x| t(x)).collect()
                };
                ticks.sort_by(f64::total_cmp);
                ticks.dedup();
                let mut chart = ChartBuilder::on(&chart_area)
                    .margin(12)
                    .x_label_area_size(48)
                    .y_label_area_size(64)
                    .build_cartesian_2d(Ticks { range: (lo - pad)..(hi + pad), ticks }, 0.0..y_max)?;
                let fmt_x = |x: &f64| number(if *log_x { 10f64.powf(*x) } else { *x });
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .x_label_formatter(&fmt_x)
                    .y_label_formatter(&|y: &f64| number(*y))
                    .label_style(label)
                    .axis_desc_style(label)
                    .bold_line_style(GRID)
                    .light_line_style(TRANSPARENT)
                    .draw()?;
                self.draw_reference(&mut chart, (lo - pad, hi + pad))?;
                for (i, (_, points)) in lines.iter().enumerate() {
                    let colour = PALETTE[i % PALETTE.len()];
                    let points: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (t(x), y)).collect();
                    if dense {
                        chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?;
                        continue;
                    }
                    chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(3)))?;
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, colour.filled())))?;
                    chart.draw_series(points.iter().map(|&(x, y)| {
                        let style = (FAMILY, 15).into_font().color(&colour);
                        EmptyElement::at((x, y)) + Text::new(format!("{y:.2}"), (8, -22), style)
                    }))?;
                }
            }
            PlotKind::Bars { categories, series } => {
                let n = categories.len().max(1);
                let centres: Vec<f64> = (0..n).map(|i| i as f64).collect();
                let mut chart = ChartBuilder::on(&chart_area)
                    .margin(12)
                    .x_label_area_size(48)
                    .y_label_area_size(72)
                    .build_cartesian_2d(Ticks { range: -0.5..n as f64 - 0.5, ticks: centres }, 0.0..y_max)?;
                let fmt_x = |x: &f64| categories.get(x.round().max(0.0) as usize).cloned().unwrap_or_default();
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .x_label_formatter(&fmt_x)
                    .y_label_formatter(&|y: &f64| number(*y))
                    .label_style(label)
                    .axis_desc_style(label)
                    .bold_line_style(GRID)
                    .light_line_style(TRANSPARENT)
                    .draw()?;
                let width = 0.8 / series.len().max(1) as f64;
                for (j, (_, values)) in series.iter().enumerate() {
                    let colour = PALETTE[j % PALETTE.len()];
                    chart.draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                        let left = i as f64 - 0.4 + j as f64 * width;
                        v.map(|v| {
                            Rectangle::new([(left + width * 0.05, 0.0), (left + width * 0.95, v)], colour.filled())
                        })
                    }))?;
                }
                self.draw_reference(&mut chart, (-0.5, n as f64 - 0.5))?;
            }
            PlotKind::Heatmap { columns, rows, values, range } => {
                self.draw_heatmap(&chart_area, &legend_area, columns, rows, values, *range)?;
            }
        }
        Ok(())
    }

    /// A heatmap's cells, axes and colour bar (in the legend column).
    fn draw_heatmap<DB: DrawingBackend>(
        &self,
        chart_area: &DrawingArea<DB, Shift>,
        legend_area: &DrawingArea<DB, Shift>,
        columns: &[String],
        rows: &[String],
        values: &[Vec<Option<f64>>],
        range: (f64, f64),
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let label = (FAMILY, 15);
        let (n_columns, n_rows) = (columns.len(), rows.len());
        // Row i is drawn at y = n_rows - 1 - i, so that the first row is at the top.
        let x_ticks = (0..n_columns).map(|j| j as f64).collect();
        let y_ticks = (0..n_rows).map(|i| i as f64).collect();
        let mut chart = ChartBuilder::on(chart_area)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(u32::try_from(heatmap_y_label_area(rows)).unwrap_or(u32::MAX))
            .build_cartesian_2d(
                Ticks { range: -0.5..n_columns.max(1) as f64 - 0.5, ticks: x_ticks },
                Ticks { range: -0.5..n_rows.max(1) as f64 - 0.5, ticks: y_ticks },
            )?;
        let fmt_x = |x: &f64| columns.get(x.round().max(0.0) as usize).cloned().unwrap_or_default();
        let fmt_y = |y: &f64| {
            let row = n_rows.checked_sub(1 + y.round().max(0.0) as usize);
            row.and_then(|i| rows.get(i)).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .label_style(label)
            .axis_desc_style(label)
            .draw()?;
        let mut cells = Vec::with_capacity(n_rows * n_columns);
        for i in 0..n_rows {
            let y = (n_rows - 1 - i) as f64;
            for j in 0..n_columns {
                cells.push(match heatmap_value(values, i, j) {
                    Some(v) => {
                        let fill = scale_colour(scale_position(v, range));
                        (j as f64, y, fill, text_colour(fill), format!("{v:.1}"))
                    }
                    None => (j as f64, y, MISSING, MISSING_INK, "–".to_string()),
                });
            }
        }
        // Each cell is inset by a pixel, so that 2 white pixels separate neighbours.
        chart.draw_series(cells.iter().map(|&(x, y, fill, ..)| {
            let mut cell = Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], fill.filled());
            cell.set_margin(1, 1, 1, 1);
            cell
        }))?;
        let centred = TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        chart.draw_series(
            cells.iter().map(|(x, y, _, ink, text)| Text::new(text.clone(), (*x, *y), centred.color(ink))),
        )?;
        if cells.is_empty() {
            let style = (FAMILY, 15).into_font().color(&MISSING_INK).pos(Pos::new(HPos::Center, VPos::Center));
            chart.plotting_area().draw(&Text::new(NO_DATA.to_string(), (0.0, 0.0), style))?;
        }
        // The colour bar spans the cells' height.
        let (_, ys) = chart.plotting_area().get_pixel_range();
        let base = legend_area.get_base_pixel().1;
        let missing = heatmap_missing(values, n_rows, n_columns);
        draw_colour_bar(legend_area, (ys.start - base, ys.end - base), range, missing)
    }

    fn draw_reference<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<Ticks, RangedCoordf64>>,
        (x0, x1): (f64, f64),
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        if let Some((_, y)) = &self.reference {
            let style = BLACK.stroke_width(2);
            chart.draw_series(DashedLineSeries::new([(x0, *y), (x1, *y)], 10, 6, style))?;
        }
        Ok(())
    }

    /// The top of the y axis: 10% above the highest value or reference line.
    fn y_max(&self) -> f64 {
        let (values, reference): (Vec<f64>, _) = match &self.kind {
            PlotKind::Lines { lines, .. } => {
                (lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).collect(), self.reference.as_ref())
            }
            PlotKind::Bars { series, .. } => {
                (series.iter().flat_map(|s| s.1.iter().flatten().copied()).collect(), self.reference.as_ref())
            }
            // A heatmap has no value axis (its values are colours), nor a reference line.
            PlotKind::Heatmap { values, .. } => (values.iter().flatten().flatten().copied().collect(), None),
        };
        let max = values.into_iter().chain(reference.map(|r| r.1)).fold(0.0, f64::max);
        if max > 0.0 {
            max * 1.1
        } else {
            1.0
        }
    }
}

/// A linear f64 axis whose ticks are exactly the given points (the categories of a bar
/// chart, the parameter values of a sweep).
#[derive(Debug, Clone)]
struct Ticks {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// Width of the legend column: room for the longest label (of a heatmap: of its colour bar).
fn legend_width(plot: &Plot) -> usize {
    let longest = match &plot.kind {
        PlotKind::Heatmap { rows, columns, values, range } => {
            let missing = heatmap_missing(values, rows.len(), columns.len());
            let labels = colour_bar_labels(*range);
            labels.iter().map(|l| l.0.chars().count()).chain(missing.then_some(NO_DATA.len())).max().unwrap_or(0)
        }
        _ => plot.legend().iter().map(|e| e.0.chars().count()).max().unwrap_or(0),
    };
    (longest * 8 + 56).clamp(120, 320)
}

/// The colour bar's label for cells without data.
const NO_DATA: &str = "no data";

/// The value of a heatmap's cell; `None` where there is no data (`None`, NaN or out of
/// `values`' bounds).
fn heatmap_value(values: &[Vec<Option<f64>>], row: usize, column: usize) -> Option<f64> {
    values.get(row).and_then(|r| r.get(column)).copied().flatten().filter(|v| !v.is_nan())
}

/// Whether some of the `n_rows` × `n_columns` cells of a heatmap have no data.
fn heatmap_missing(values: &[Vec<Option<f64>>], n_rows: usize, n_columns: usize) -> bool {
    (0..n_rows).any(|i| (0..n_columns).any(|j| heatmap_value(values, i, j).is_none()))
}

/// A heatmap cell's size in pixels: room for the column labels and the values' texts.
fn heatmap_cell(columns: &[String], values: &[Vec<Option<f64>>]) -> (usize, usize) {
    let label = columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let value = values.iter().flatten().flatten().map(|v| format!("{v:.1}").len()).max().unwrap_or(0);
    ((label * 8 + 16).max(value * 8 + 12).max(MIN_CELL.0), MIN_CELL.1)
}

/// The width of a heatmap's y-label area: the row labels and the axis description.
fn heatmap_y_label_area(rows: &[String]) -> usize {
    let longest = rows.iter().map(|r| r.chars().count()).max().unwrap_or(0);
    (longest * 8 + 44).max(64)
}

/// Where `value` lies on the colour scale over `(low, high)`: 0 at `low`, 1 at `high`,
/// clamped; 0.5 where that is undefined (a range of zero width at `value`, a NaN bound).
fn scale_position(value: f64, (low, high): (f64, f64)) -> f64 {
    let t = (value - low) / (high - low);
    if t.is_nan() {
        0.5
    } else {
        t.clamp(0.0, 1.0)
    }
}

/// The colour at position `t` (0 to 1) of the heatmap scale.
fn scale_colour(t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.5 } else { t.clamp(0.0, 1.0) };
    let (a, b, u) = if t <= 0.5 { (SCALE_LOW, SCALE_MID, t * 2.0) } else { (SCALE_MID, SCALE_HIGH, t * 2.0 - 1.0) };
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Black or white, whichever contrasts more with `background` (WCAG contrast ratio).
fn text_colour(background: RGBColor) -> RGBColor {
    let linear = |c: u8| {
        let s = f64::from(c) / 255.0;
        if s <= 0.040_45 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * linear(background.0) + 0.7152 * linear(background.1) + 0.0722 * linear(background.2);
    // Contrast with black (l + 0.05) / 0.05 against contrast with white 1.05 / (l + 0.05).
    if (l + 0.05) * (l + 0.05) >= 0.05 * 1.05 {
        BLACK
    } else {
        WHITE
    }
}

/// The colour bar's labels, top to bottom: the range's high end, midpoint and low end, each
/// with its position on the scale.
fn colour_bar_labels((low, high): (f64, f64)) -> [(String, f64); 3] {
    [(number(high), 1.0), (number(f64::midpoint(low, high)), 0.5), (number(low), 0.0)]
}

/// A heatmap's legend: a vertical colour bar from pixel row `top` (the high end) to `bottom`,
/// labelled at its ends and middle, and, when some cells have no data, a grey swatch below.
fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (top, bottom): (i32, i32),
    range: (f64, f64),
    missing: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const BANDS: i32 = 64;
    let height = (bottom - top).max(1);
    for k in 0..BANDS {
        let (y0, y1) = (top + height * k / BANDS, top + height * (k + 1) / BANDS);
        let colour = scale_colour(1.0 - (f64::from(k) + 0.5) / f64::from(BANDS));
        area.draw(&Rectangle::new([(8, y0), (30, y1)], colour.filled()))?;
    }
    area.draw(&Rectangle::new([(8, top), (30, top + height)], RGBColor(128, 128, 128).stroke_width(1)))?;
    let style = TextStyle::from((FAMILY, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (label, t) in colour_bar_labels(range) {
        let y = top + (f64::from(height) * (1.0 - t)).round() as i32;
        area.draw(&PathElement::new([(30, y), (35, y)], BLACK.stroke_width(1)))?;
        area.draw(&Text::new(label, (38, y), style.clone()))?;
    }
    if missing {
        let y = top + height + 28;
        area.draw(&Rectangle::new([(8, y - 8), (30, y + 8)], MISSING.filled()))?;
        area.draw(&Text::new(NO_DATA.to_string(), (38, y), style))?;
    }
    Ok(())
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swatch {
    Bar,
    Line,
    Dashed,
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, Swatch)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, (label, colour, swatch)) in (0..).zip(entries) {
        let y = 24 + 26 * i;
        match swatch {
            Swatch::Bar => area.draw(&Rectangle::new([(4, y - 7), (28, y + 7)], colour.filled()))?,
            Swatch::Line => {
                area.draw(&PathElement::new([(4, y), (28, y)], colour.stroke_width(3)))?;
                area.draw(&Circle::new((16, y), 5, colour.filled()))?;
            }
            Swatch::Dashed => {
                for x in [4, 18] {
                    area.draw(&PathElement::new([(x, y), (x + 10, y)], colour.stroke_width(2)))?;
                }
            }
        }
        let style = TextStyle::from((FAMILY, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.clone(), (36, y), style))?;
    }
    Ok(())
}

/// A tick label: 3 significant digits (no fewer than the integer part), no trailing zeros.
fn number(x: f64) -> String {
    let decimals = if x == 0.0 { 0 } else { (2 - x.abs().log10().floor() as i32).clamp(0, 10) as usize };
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The embedded font, parsed once and registered with plotters under [`FAMILY`] (plotters
/// keeps a global table; the SVG backend measures text with it).
fn font() -> Result<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).ok()?;
            FontRef::try_from_slice(FONT).ok()
        })
        .as_ref()
        .ok_or_else(|| Error::Plot { plot: String::new(), message: "the embedded font does not parse".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars() -> Plot {
        Plot {
            name: "b".into(),
            title: "Bars".into(),
            x_label: "dataset".into(),
            y_label: "score".into(),
            reference: Some(("full (baseline)".into(), 1.0)),
            kind: PlotKind::Bars {
                categories: vec!["qasper".into(), "trec".into()],
                series: vec![("a".into(), vec![Some(1.0), Some(0.5)]), ("b".into(), vec![None, Some(1.2)])],
            },
        }
    }

    #[test]
    fn svg_has_text_and_bars_and_png_decodes() {
        let plot = bars();
        let svg = plot.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("\nqasper\n") && svg.contains("\nfull (baseline)\n"), "{svg}");
        assert!(svg.matches("<rect").count() >= 4);
        let png = plot.png().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), plot.size());
        // Deterministic.
        assert_eq!(plot.svg().unwrap(), svg);
    }

    /// RULER's view: 11 depths (rows) × 5 context lengths (columns), three cells without data.
    fn ruler_heatmap() -> Plot {
        let columns: Vec<String> = ["1k", "2k", "4k", "8k", "16k"].into_iter().map(String::from).collect();
        let rows: Vec<String> = (0..=10).map(|d| format!("{}%", d * 10)).collect();
        let values = (0..11)
            .map(|i| {
                (0..5)
                    .map(|j| match (i, j) {
                        (0, 0) => Some(87.5),
                        (0, 1) => Some(100.0),
                        (5, 4) | (7, 3) | (10, 2) => None,
                        _ => Some(100.0 - 10.0 * f64::from(j) - 2.5 * f64::from(i)),
                    })
                    .collect()
            })
            .collect();
        heatmap(
            "ruler depth",
            "RULER: score by needle depth",
            "context length",
            "needle depth",
            columns,
            rows,
            values,
            (0.0, 100.0),
        )
    }

    /// The `y` attribute of the `<text>` element whose content is `text`.
    fn text_y(svg: &str, text: &str) -> f64 {
        let at = svg.find(&format!(">\n{text}\n</text>")).unwrap_or_else(|| panic!("no text {text:?}"));
        let element = &svg[svg[..at].rfind("<text").unwrap()..at];
        let y = &element[element.find(" y=\"").unwrap() + 4..];
        y[..y.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn heatmap_svg_has_cell_values_missing_cells_and_labels() {
        let plot = ruler_heatmap();
        assert_eq!(plot.name, "ruler_depth");
        let svg = plot.svg().unwrap();
        for text in ["87.5", "100.0", "62.5", "context length", "needle depth", "1k", "16k", "0%", "50%", "100%"] {
            assert!(svg.contains(&format!("\n{text}\n")), "no {text:?} in {svg}");
        }
        // Three cells without data, and the colour bar's labels.
        assert_eq!(svg.matches("\n–\n").count(), 3);
        for text in ["0", "50", "100", "no data"] {
            assert!(svg.contains(&format!("\n{text}\n")), "no colour bar label {text:?}");
        }
        // The first row is at the top, the first column at the left.
        assert!(text_y(&svg, "0%") < text_y(&svg, "50%") && text_y(&svg, "50%") < text_y(&svg, "100%"));
        // The grey of cells without data, and a rectangle per cell.
        assert!(svg.contains(&format!("fill=\"#{:02X}{:02X}{:02X}\"", MISSING.0, MISSING.1, MISSING.2)), "{svg}");
        assert!(svg.matches("<rect").count() >= 55);
        // No legend entry for the (ignored) reference line.
        let mut with_reference = plot.clone();
        with_reference.reference = Some(("baseline".into(), 50.0));
        assert!(!with_reference.svg().unwrap().contains("baseline"));
        assert_eq!(plot.svg().unwrap(), svg, "deterministic");
    }

    #[test]
    fn heatmap_png_decodes_with_its_size() {
        let plot = ruler_heatmap();
        let (w, h) = plot.size();
        assert!(w >= 900 && h >= 480);
        let png = plot.png().unwrap();
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let info = decoder.info().clone();
        assert_eq!((info.width, info.height), (w, h));
        let mut rgb = vec![0; decoder.output_buffer_size().unwrap()];
        decoder.next_frame(&mut rgb).unwrap();
        // Cells at 100 are the scale's green, cells without data grey.
        let has = |c: RGBColor| rgb.chunks_exact(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(SCALE_HIGH) && has(MISSING));
    }

    #[test]
    fn heatmap_clamps_values_outside_its_range() {
        assert_eq!(scale_colour(scale_position(-50.0, (0.0, 100.0))), SCALE_LOW);
        assert_eq!(scale_colour(scale_position(0.0, (0.0, 100.0))), SCALE_LOW);
        assert_eq!(scale_colour(scale_position(50.0, (0.0, 100.0))), SCALE_MID);
        assert_eq!(scale_colour(scale_position(250.0, (0.0, 100.0))), SCALE_HIGH);
        assert_eq!(scale_colour(scale_position(f64::INFINITY, (0.0, 1.0))), SCALE_HIGH);
        // Degenerate ranges do not panic.
        assert_eq!(scale_colour(scale_position(3.0, (3.0, 3.0))), SCALE_MID);
        assert_eq!(scale_colour(scale_position(3.0, (f64::NAN, 1.0))), SCALE_MID);
        assert_eq!(scale_colour(0.25), RGBColor(235, 136, 89));
        // Text contrasts with its cell.
        assert_eq!(text_colour(SCALE_LOW), WHITE);
        assert_eq!(text_colour(SCALE_MID), BLACK);
        assert_eq!(text_colour(RGBColor(20, 20, 20)), WHITE);
        let plot = heatmap(
            "h",
            "Out of range",
            "x",
            "y",
            vec!["a".into(), "b".into(), "c".into()],
            vec!["r".into()],
            // A ragged row: its missing third cell has no data.
            vec![vec![Some(-20.0), Some(1e9), Some(f64::NAN)], vec![Some(f64::NEG_INFINITY)]],
            (0.0, 1.0),
        );
        let svg = plot.svg().unwrap();
        assert!(svg.contains("\n-20.0\n") && svg.contains("\n1000000000.0\n") && svg.contains("\n–\n"));
        // The long value widens the cells.
        assert!(heatmap_cell(&["a".into()], &[vec![Some(1e9)]]).0 > MIN_CELL.0);
        plot.png().unwrap();
    }

    #[test]
    fn empty_heatmap_renders_no_data() {
        let labels = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        for (columns, rows) in [(0, 0), (3, 0), (0, 4)] {
            let plot = heatmap("e", "Empty", "x", "y", labels(columns), labels(rows), Vec::new(), (0.0, 100.0));
            assert_eq!(plot.size(), (900, 480));
            let svg = plot.svg().unwrap();
            assert!(svg.contains("\nno data\n") && !svg.contains("\n–\n"), "{svg}");
            let png = plot.png().unwrap();
            let info = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap().info().clone();
            assert_eq!((info.width, info.height), plot.size());
        }
    }

    #[test]
    fn heatmap_size_grows_with_columns_and_rows() {
        let labels = |n: usize| (0..n).map(|i| format!("{i}k")).collect::<Vec<_>>();
        let sized = |columns: usize, rows: usize| {
            let values = vec![vec![Some(50.0); columns]; rows];
            heatmap("s", "Size", "x", "y", labels(columns), labels(rows), values, (0.0, 100.0)).size()
        };
        assert_eq!(sized(5, 11), (900, 480));
        let (w, h) = sized(30, 40);
        assert!(w >= 30 * 60 && h >= 40 * 28, "{w}x{h}");
        assert!(sized(31, 40).0 > w && sized(30, 41).1 > h);
    }

    #[test]
    fn tick_numbers() {
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.000_123_4), "0.000123");
        assert_eq!(number(123.4), "123");
        assert_eq!(file_stem("rag k/5"), "rag_k_5");
    }
}
