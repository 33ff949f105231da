//! The report's plots, drawn with plotters to SVG (text as `<text>` elements) and to PNG (text
//! rasterized with the embedded Roboto font, so no system font is needed).
//!
//! Each plot has a legend in its own column to the right of the chart, so that it never
//! covers data; bar charts grow wider with the number of bars.

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
    /// A dashed horizontal reference line: `(legend label, y)`.
    pub reference: Option<(String, f64)>,
    /// What is drawn.
    pub kind: PlotKind,
}

/// The two kinds of plot a report has.
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
    /// The size in pixels: bar charts widen with their number of bars and label lengths.
    pub fn size(&self) -> (u32, u32) {
        let width = match &self.kind {
            PlotKind::Lines { .. } => 900,
            PlotKind::Bars { categories, series } => {
                let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
                let group = (series.len() * 22 + 24).max(longest * 8 + 16);
                (160 + legend_width(self) + categories.len() * group).max(900)
            }
        };
        (width as u32, 480)
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

    /// The legend's entries.
    fn legend(&self) -> Vec<(String, RGBColor, Swatch)> {
        let (labels, swatch): (Vec<&String>, _) = match &self.kind {
            PlotKind::Lines { lines, .. } => (lines.iter().map(|l| &l.0).collect(), Swatch::Line),
            PlotKind::Bars { series, .. } => (series.iter().map(|s| &s.0).collect(), Swatch::Bar),
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
        }
        Ok(())
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
        let values: Vec<f64> = match &self.kind {
            PlotKind::Lines { lines, .. } => lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).collect(),
            PlotKind::Bars { series, .. } => series.iter().flat_map(|s| s.1.iter().flatten().copied()).collect(),
        };
        let max = values.into_iter().chain(self.reference.as_ref().map(|r| r.1)).fold(0.0, f64::max);
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

/// Width of the legend column: room for the longest label.
fn legend_width(plot: &Plot) -> usize {
    let longest = plot.legend().iter().map(|e| e.0.chars().count()).max().unwrap_or(0);
    (longest * 8 + 56).clamp(120, 320)
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
