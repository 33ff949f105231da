//! Rendering a [`Report`] as Markdown (plots linked as PNG files) and as one self-contained
//! HTML page (inline CSS, plots as inline SVG; no external requests).

use std::fmt::Write as _;

use crate::report::{Report, Section, Table};

/// The report as Markdown; plots are linked as `plots/<name>.png` (and `.svg`).
pub fn markdown(report: &Report) -> String {
    let mut md = format!("# {}\n\n", report.title);
    for (key, value) in &report.header {
        let _ = writeln!(md, "- **{key}:** {}", md_cell(value));
    }
    let (first, rest) = report.sections.split_at(report.plots_after.min(report.sections.len()));
    for s in first {
        md_section(&mut md, s);
    }
    if !report.plots.is_empty() {
        md.push_str("\n## Plots\n");
        for p in &report.plots {
            let _ = write!(md, "\n![{}](plots/{}.png)\n\n[SVG](plots/{}.svg)\n", p.title, p.name, p.name);
        }
    }
    for s in rest {
        md_section(&mut md, s);
    }
    if !report.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &report.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn md_section(md: &mut String, s: &Section) {
    let _ = write!(md, "\n## {}\n\n{}\n\n{}", s.title, s.text, md_table(&s.table));
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(t: &Table) -> String {
    let row = |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | "));
    let rule: Vec<String> =
        (0..t.header.len()).map(|i| if i < t.label_columns { ":---" } else { "---:" }.to_string()).collect();
    let mut out = row(&t.header) + &format!("|{}|\n", rule.join("|"));
    for r in &t.rows {
        out += &row(r);
    }
    out
}

const CSS: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d2330;
       font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 8px 0 16px; }
h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 2px solid #dde1e8; padding-bottom: 4px; }
p { margin: 6px 0 12px; color: #454d5d; }
code { background: #eceef2; padding: 0 4px; border-radius: 3px; font-size: 90%; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0;
            background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px 16px; }
dl.header dt { font-weight: 600; }
dl.header dd { margin: 0; overflow-wrap: anywhere; }
nav { margin: 16px 0 0; }
nav a { margin-right: 14px; color: #2457a6; text-decoration: none; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums;
        border: 1px solid #dde1e8; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e6e9ee; white-space: nowrap; }
th { background: #eef1f6; text-align: center; font-weight: 600; }
td.num { text-align: right; }
td.label { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; }
tr:last-child td { border-bottom: none; }
figure { margin: 16px 0; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 8px; }
figure .scroll svg { display: block; }
ul.notes li { color: #454d5d; }
";

/// The report as one self-contained HTML page; `svgs` holds each plot's SVG document, in the
/// order of `report.plots`.
pub fn html(report: &Report, svgs: &[String]) -> String {
    let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = write!(
        h,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n<dl class=\"header\">\n",
        esc(&report.title),
        esc(&report.title)
    );
    for (key, value) in &report.header {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(key), esc(value));
    }
    let (first, rest) = report.sections.split_at(report.plots_after.min(report.sections.len()));
    h.push_str("</dl>\n<nav>");
    for s in first {
        let _ = write!(h, "<a href=\"#{}\">{}</a>", s.id, esc(&s.title));
    }
    if !report.plots.is_empty() {
        h.push_str("<a href=\"#plots\">Plots</a>");
    }
    for s in rest {
        let _ = write!(h, "<a href=\"#{}\">{}</a>", s.id, esc(&s.title));
    }
    h.push_str("</nav>\n");
    for s in first {
        html_section(&mut h, s);
    }
    if !report.plots.is_empty() {
        h.push_str("<section id=\"plots\">\n<h2>Plots</h2>\n");
        for (p, svg) in report.plots.iter().zip(svgs) {
            let _ = write!(
                h,
                "<figure id=\"plot-{}\" title=\"{}\">\n<div class=\"scroll\">{}</div>\n</figure>\n",
                p.name,
                esc(&p.title),
                svg.trim()
            );
        }
        h.push_str("</section>\n");
    }
    for s in rest {
        html_section(&mut h, s);
    }
    if !report.notes.is_empty() {
        h.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n<ul class=\"notes\">\n");
        for n in &report.notes {
            let _ = writeln!(h, "<li>{}</li>", code_spans(&esc(n)));
        }
        h.push_str("</ul>\n</section>\n");
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn html_section(h: &mut String, s: &Section) {
    let _ = write!(
        h,
        "<section id=\"{}\">\n<h2>{}</h2>\n<p>{}</p>\n{}</section>\n",
        s.id,
        esc(&s.title),
        code_spans(&esc(&s.text)),
        html_table(&s.table)
    );
}

fn html_table(t: &Table) -> String {
    let mut h = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for c in &t.header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        h.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if i < t.label_columns { "label" } else { "num" };
            let _ = write!(h, "<td class=\"{class}\">{}</td>", esc(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table></div>\n");
    h
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Turns Markdown's `` `code` `` spans of (escaped) text into `<code>` elements.
fn code_spans(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return s.to_string(); // unbalanced: leave as is
    }
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            title: "longctx report: t".into(),
            header: vec![("Experiment".into(), "a|b <c>".into())],
            sections: vec![Section {
                id: "scores",
                title: "Scores".into(),
                text: "See `x`.".into(),
                table: Table {
                    header: vec!["Dataset".into(), "full".into()],
                    rows: vec![vec!["qasper".into(), "12.50".into()]],
                    label_columns: 1,
                },
            }],
            plots: Vec::new(),
            plots_after: 1,
            notes: vec!["`v`: note".into()],
        }
    }

    #[test]
    fn markdown_escapes_and_aligns() {
        let md = markdown(&report());
        assert!(md.contains("- **Experiment:** a\\|b <c>\n"), "{md}");
        assert!(md.contains("| Dataset | full |\n|:---|---:|\n| qasper | 12.50 |\n"), "{md}");
        assert!(md.ends_with("## Notes\n\n- `v`: note\n"));
    }

    #[test]
    fn html_escapes_and_marks_code() {
        let h = html(&report(), &[]);
        assert!(h.contains("<dd>a|b &lt;c&gt;</dd>"));
        assert!(h.contains("<p>See <code>x</code>.</p>"));
        assert!(h.contains("<td class=\"label\">qasper</td><td class=\"num\">12.50</td>"));
        assert!(!h.contains("http:") && !h.contains("https:"), "no external references");
        assert_eq!(code_spans("a `b"), "a `b");
    }
}
