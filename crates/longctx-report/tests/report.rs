//! End to end: a synthetic run directory in, report files out.

mod common;

use std::collections::BTreeSet;

use common::{decode_png, synthetic_run, DATASETS, VARIANTS};
use longctx_bench::score::DatasetScore;
use longctx_report::summary::read_result_json;
use longctx_report::{write_report, Error, ReportOptions};

fn md_row<'a>(md: &'a str, section: &str, first_cell: &str) -> Vec<&'a str> {
    let start = md.find(&format!("## {section}\n")).unwrap_or_else(|| panic!("no section {section}"));
    let line = md[start..]
        .lines()
        .find(|l| l.starts_with(&format!("| {first_cell} |")))
        .unwrap_or_else(|| panic!("no row {first_cell} in {section}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

#[test]
fn report_of_a_synthetic_run() {
    let run = tempfile::tempdir().unwrap();
    synthetic_run(run.path());
    let paths = write_report(run.path(), &ReportOptions::default()).unwrap();
    let out = run.path().join("report");
    assert_eq!(paths.markdown, out.join("report.md"));
    assert_eq!(paths.html, out.join("report.html"));
    let names: Vec<String> =
        paths.plots.iter().map(|p| p.strip_prefix(out.join("plots")).unwrap().display().to_string()).collect();
    assert_eq!(
        names,
        [
            "sweep-rag.png",
            "sweep-rag.svg",
            "scores-by-dataset.png",
            "scores-by-dataset.svg",
            "tokens-kept.png",
            "tokens-kept.svg",
            "cost-per-query.png",
            "cost-per-query.svg"
        ]
    );
    let md = fs_err::read_to_string(&paths.markdown).unwrap();

    // Header.
    assert!(md.starts_with("# longctx report: quickstart\n\n- **Experiment:** quickstart\n- **Status:** complete\n"));
    assert!(md.contains("- **Models:** smollm2 (native, native:SmolLM2-135M-Instruct.Q4_1.gguf)\n"));
    assert!(md.contains("- **Started:** 2026-11-29T12:00:00Z\n- **Finished:** 2026-11-29T12:10:00Z\n"));

    // Scores equal result.json's; rag-k100 (no result.json) is computed and noted.
    let header = md_row(&md, "Scores", "Dataset");
    assert_eq!(header, ["Dataset", "full", "truncate-end", "rag-k5", "rag-k20", "rag-k100"]);
    for (v, (name, ..)) in VARIANTS.iter().enumerate().take(4) {
        let official = read_result_json(&run.path().join(name).join("result.json")).unwrap();
        let mut sum = 0.0;
        for dataset in DATASETS {
            let DatasetScore::Total(x) = official[dataset] else { panic!() };
            assert_eq!(md_row(&md, "Scores", dataset)[v + 1], format!("{x:.2}"), "{name} {dataset}");
            sum += x;
        }
        assert_eq!(md_row(&md, "Scores", "Average")[v + 1], format!("{:.2}", sum / 4.0));
    }
    assert_eq!(md_row(&md, "Scores", "passage_retrieval_zh")[1], "0.00");
    assert!(md.contains("- `rag-k100` / `qasper`: scores computed from the predictions (no result.json entry)"));

    // Normalized: the baseline is 1.00; its zero score leaves passage_retrieval_zh undefined.
    assert!(md.contains("## Scores relative to full\n"));
    assert_eq!(md_row(&md, "Scores relative to full", "qasper")[1], "1.00");
    assert_eq!(md_row(&md, "Scores relative to full", "passage_retrieval_zh")[1..], ["–"; 5]);
    assert_eq!(md_row(&md, "Scores relative to full", "Average")[1], "1.00");

    // Buckets: 2 samples per bucket and dataset.
    assert!(md.contains("| Dataset | Variant | 0-4k | 4-8k | 8k+ |\n|:---|:---|---:|---:|---:|\n"));
    let all = md_row(&md, "Scores by length bucket", "All datasets (mean)");
    assert_eq!(all[1], "full");
    assert!(all[2].ends_with("(n=8)"), "{all:?}");
    let qasper = md_row(&md, "Scores by length bucket", "qasper");
    assert!(qasper[2..].iter().all(|c| c.ends_with("(n=2)")), "{qasper:?}");

    // Tokens, cost, failed samples.
    let tokens = md_row(&md, "Tokens kept", "rag-k5");
    assert_eq!(tokens[1], "24");
    assert_eq!(tokens[2], "520.0");
    let cost = md_row(&md, "Cost and latency", "rag-k20");
    assert!(cost[1].starts_with("0.000") && cost[1] != "0.000000", "{cost:?}");
    assert_eq!(md_row(&md, "Cost and latency", "full")[2], "0.0000");
    assert_eq!(
        md_row(&md, "Failed samples", "truncate-end"),
        ["truncate-end", "qasper", "backend: the prompt of 9000 tokens exceeds the budget of 8192", "1"]
    );

    // Plots: linked from the Markdown, inline in the HTML, PNG text rendered.
    assert!(md.contains("![rag: score relative to full vs k](plots/sweep-rag.png)"));
    assert!(md.contains("![Tokens per query: kept (prompt) vs original](plots/tokens-kept.png)"));
    let html = fs_err::read_to_string(&paths.html).unwrap();
    assert_eq!(html.matches("<svg ").count(), 4);
    assert_eq!(html.matches("<table>").count(), 6);
    for attr in ["src=", "href=\"http", "url(", "@import", "<link", "<script"] {
        assert!(!html.contains(attr), "external reference `{attr}` in the HTML");
    }
    for png in paths.plots.iter().filter(|p| p.extension().unwrap() == "png") {
        let (w, h, pixels) = decode_png(&fs_err::read(png).unwrap());
        assert!(w >= 900 && h == 480);
        // Title text: dark anti-aliased pixels in the top band.
        let title_dark = pixels[..(w * 40) as usize].iter().filter(|p| p.iter().all(|c| *c < 100)).count();
        assert!(title_dark > 200, "{}: no title text ({title_dark} dark pixels)", png.display());
        let colours: BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
        assert!(colours.len() > 30, "{}: {} colours", png.display(), colours.len());
    }
    let sweep = fs_err::read_to_string(out.join("plots/sweep-rag.svg")).unwrap();
    for tick in ["\n5\n", "\n20\n", "\n100\n", "full (baseline)"] {
        assert!(sweep.contains(tick), "sweep plot lacks {tick:?}");
    }

    // Deterministic: a second report is byte for byte the same.
    let again = run.path().join("again");
    let paths2 = write_report(run.path(), &ReportOptions { out_dir: Some(again.clone()), baseline: None }).unwrap();
    assert_eq!(fs_err::read(&paths2.markdown).unwrap(), md.as_bytes());
    assert_eq!(fs_err::read(&paths2.html).unwrap(), html.as_bytes());
    for (a, b) in paths.plots.iter().zip(&paths2.plots) {
        assert_eq!(fs_err::read(a).unwrap(), fs_err::read(b).unwrap(), "{}", a.display());
    }
}

#[test]
fn baseline_option_and_errors() {
    let run = tempfile::tempdir().unwrap();
    synthetic_run(run.path());
    let out = run.path().join("other");
    let options = ReportOptions { out_dir: Some(out.clone()), baseline: Some("truncate-end".into()) };
    let paths = write_report(run.path(), &options).unwrap();
    let md = fs_err::read_to_string(paths.markdown).unwrap();
    assert!(md.contains("- **Baseline:** truncate-end\n"));
    assert_eq!(md_row(&md, "Scores relative to truncate-end", "trec")[2], "1.00");

    let bad = ReportOptions { baseline: Some("nope".into()), ..ReportOptions::default() };
    let err = write_report(run.path(), &bad).unwrap_err();
    assert!(matches!(err, Error::UnknownBaseline { .. }));
    assert!(err.to_string().contains("variants: full, truncate-end, rag-k5, rag-k20, rag-k100"), "{err}");

    // A broken prediction line is reported with its file and line.
    let qasper = run.path().join("rag-k5/qasper.jsonl");
    let text = fs_err::read_to_string(&qasper).unwrap();
    fs_err::write(&qasper, text.replacen("\"pred\"", "\"prd\"", 1)).unwrap();
    let err = write_report(run.path(), &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("rag-k5/qasper.jsonl:1:"), "{err}");
}
