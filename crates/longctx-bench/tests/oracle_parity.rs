//! Parity with LongBench's own scorer: fixtures written by `tools/oracles/longbench_scoring.py`
//! from LongBench's `metrics.py` / `eval.py` (rouge 1.0.1, fuzzywuzzy 0.18.0, jieba 0.42.1,
//! python-Levenshtein 0.27.5, numpy 2.1.3).

use std::path::{Path, PathBuf};

use longctx_bench::dataset::Suite;
use longctx_bench::metrics::{FuzzBackend, MetricOptions};
use longctx_bench::pyfloat::{np_mean, np_round2};
use longctx_bench::score::{score_dir, ScoreOptions, ScoreReport};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles")
}

#[derive(Deserialize)]
struct PerSample {
    dataset: String,
    line: usize,
    score_difflib: f64,
    score_levenshtein: f64,
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()))).collect()
}

fn score(dir: &Path, suite: Suite, fuzz: FuzzBackend) -> ScoreReport {
    let options = ScoreOptions { suite, metric: MetricOptions { fuzz } };
    score_dir(&dir.join("preds"), &options).expect("scores")
}

/// Every per-sample score within 1e-9 of the oracle, and result.json byte-identical.
fn check_dir(dir: &Path, min_samples: usize, backends: &[(FuzzBackend, &str)]) {
    let expected: Vec<PerSample> = read_jsonl(&dir.join("per_sample.jsonl"));
    assert!(expected.len() >= min_samples, "{} samples in the fixture", expected.len());
    for &(fuzz, suffix) in backends {
        let report = score(dir, Suite::LongBench, fuzz);
        let got: Vec<(&str, usize, f64)> = report
            .datasets
            .iter()
            .flat_map(|d| d.per_sample.iter().enumerate().map(move |(i, s)| (d.spec.name, i + 1, *s)))
            .collect();
        assert_eq!(got.len(), expected.len());
        let mut mismatches = Vec::new();
        for ((name, line, s), e) in got.iter().zip(&expected) {
            assert_eq!((*name, *line), (e.dataset.as_str(), e.line));
            let want = if fuzz == FuzzBackend::Difflib { e.score_difflib } else { e.score_levenshtein };
            if (s - want).abs() > 1e-9 {
                mismatches.push(format!("{name}:{line}: longctx {s} oracle {want}"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} per-sample mismatches ({suffix}):\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
        let want = std::fs::read_to_string(dir.join(format!("result{suffix}.json"))).unwrap();
        assert_eq!(report.result_json(), want, "result{suffix}.json");
        let report_e = score(dir, Suite::LongBenchE, fuzz);
        let want_e = std::fs::read_to_string(dir.join(format!("result_e{suffix}.json"))).unwrap();
        // LongBench-E only has 13 datasets: the fixture's result_e covers those files.
        assert_eq!(report_e.result_json(), want_e, "result_e{suffix}.json");
    }
}

#[test]
fn metrics_match_the_reference_on_hard_cases_for_all_21_datasets() {
    let dir = fixtures().join("longbench_metrics");
    check_dir(&dir, 3000, &[(FuzzBackend::Difflib, ""), (FuzzBackend::Levenshtein, "_levenshtein")]);
}

#[test]
fn real_records_with_baseline_predictions_match_the_reference() {
    check_dir(&fixtures().join("longbench_real"), 600, &[(FuzzBackend::Difflib, "")]);
}

#[derive(Deserialize)]
struct MeanCase {
    values: Vec<f64>,
    mean: Option<f64>,
    rounded: Option<f64>,
}

#[test]
fn numpy_mean_and_round_are_bit_exact() {
    let cases: Vec<MeanCase> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("numpy_mean/cases.json")).unwrap()).unwrap();
    assert!(cases.len() > 300);
    for (i, c) in cases.iter().enumerate() {
        let mean = np_mean(&c.values);
        let rounded = np_round2(100.0 * mean);
        match (c.mean, c.rounded) {
            (Some(m), Some(r)) => {
                assert_eq!(mean.to_bits(), m.to_bits(), "case {i} (n = {}): mean", c.values.len());
                assert_eq!(rounded.to_bits(), r.to_bits(), "case {i}: rounded");
            }
            _ => assert!(c.values.is_empty() && mean.is_nan() && rounded.is_nan()),
        }
    }
}
