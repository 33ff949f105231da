//! Aggregates of a run directory: per variant × dataset scores (as `result.json` has them),
//! length buckets, tokens, cost and latency, failed samples, and normalization to a baseline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use longctx_bench::dataset::{dataset, Suite};
use longctx_bench::pyfloat::{np_mean, np_round2, py_round2};
use longctx_bench::score::{
    bucket_of, prediction_files, read_predictions, score_predictions, DatasetScore, ScoreOptions, BUCKETS,
};
use longctx_core::Prediction;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, VariantInfo};

/// A run directory, read and aggregated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's manifest.
    pub manifest: Manifest,
    /// The suite of the run.
    pub suite: Suite,
    /// The datasets: the manifest's, in its order, then any others found on disk, sorted.
    pub datasets: Vec<String>,
    /// One entry per variant of the manifest, in its order.
    pub variants: Vec<VariantSummary>,
    /// Remarks on the inputs (scores computed for want of `result.json`, stale `result.json`).
    pub notes: Vec<String>,
}

/// One variant's aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSummary {
    /// The variant as the manifest describes it.
    pub info: VariantInfo,
    /// Aggregates per dataset that has predictions.
    pub datasets: BTreeMap<String, DatasetSummary>,
    /// Failed samples per dataset (from `failed/<dataset>.jsonl`).
    pub failed: BTreeMap<String, FailedSamples>,
}

/// One variant's aggregates on one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// The score in `[0, 100]` as LongBench reports it: `round(100 * mean, 2)` over all samples
    /// (for LongBench, `result.json`'s number when it has one).
    pub score: f64,
    /// Per length bucket of [`BUCKETS`] (for LongBench-E, `result.json`'s numbers when it has
    /// them).
    pub buckets: [Bucket; 3],
    /// Where the numbers come from.
    pub source: ScoreSource,
    /// Token, cost and latency sums.
    pub usage: Usage,
}

/// Where a dataset score comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreSource {
    /// The variant's `result.json`.
    ResultJson,
    /// Computed from the predictions with the LongBench scorer (no `result.json` entry).
    Predictions,
}

/// The samples of one length bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// Samples whose `length` falls in the bucket.
    pub samples: usize,
    /// `round(100 * np.mean(scores), 2)` as LongBench-E computes it; `None` when empty.
    pub score: Option<f64>,
}

/// Sums over predictions of the numeric keys longctx adds to each line (absent keys count 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Predictions counted.
    pub samples: usize,
    /// Tokens the model received.
    pub prompt_tokens: f64,
    /// Tokens of the full, untruncated prompt.
    pub original_tokens: f64,
    /// Tokens generated.
    pub completion_tokens: f64,
    /// Cost in US dollars (generation, retrieval and reranking).
    pub cost_usd: f64,
    /// Seconds of latency.
    pub latency_s: f64,
    /// Predictions whose prompt was truncated.
    pub truncated: usize,
}

/// The failed samples of one variant on one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSamples {
    /// How many.
    pub count: usize,
    /// The first error message.
    pub first_error: String,
}

/// A group of variants that differ by one numeric parameter (a k sweep).
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The group's name.
    pub group: String,
    /// The parameter that varies.
    pub param: String,
    /// `(parameter value, index into RunSummary::variants)`, by increasing value.
    pub points: Vec<(f64, usize)>,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.samples += other.samples;
        self.prompt_tokens += other.prompt_tokens;
        self.original_tokens += other.original_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_usd += other.cost_usd;
        self.latency_s += other.latency_s;
        self.truncated += other.truncated;
    }

    /// Sums the longctx keys of `predictions` (read from `path`, for error messages).
    fn of(path: &Path, predictions: &[Prediction]) -> Result<Usage> {
        let mut u = Usage { samples: predictions.len(), ..Usage::default() };
        for (i, p) in predictions.iter().enumerate() {
            let num = |key: &str| -> Result<f64> {
                match p.extra.get(key) {
                    None | Some(Value::Null) => Ok(0.0),
                    Some(v) => v.as_f64().ok_or_else(|| Error::Jsonl {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: format!("`{key}` is {v}, not a number"),
                    }),
                }
            };
            u.prompt_tokens += num("prompt_tokens")?;
            u.original_tokens += num("original_tokens")?;
            u.completion_tokens += num("completion_tokens")?;
            u.cost_usd += num("cost_usd")?;
            u.latency_s += num("latency_s")?;
            u.truncated += usize::from(p.extra.get("truncated").and_then(Value::as_bool).unwrap_or(false));
        }
        Ok(u)
    }
}

impl VariantSummary {
    /// The variant's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The score on `dataset`, if the variant has predictions for it.
    pub fn score(&self, dataset: &str) -> Option<f64> {
        self.datasets.get(dataset).map(|d| d.score)
    }

    /// Usage summed over all datasets.
    pub fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for d in self.datasets.values() {
            total.add(&d.usage);
        }
        total
    }

    /// Failed samples over all datasets.
    pub fn failed_count(&self) -> usize {
        self.failed.values().map(|f| f.count).sum()
    }
}

impl RunSummary {
    /// Reads `run_dir/manifest.json` and every variant's predictions, `result.json` and failed
    /// samples. A variant without a directory (not started) or a dataset without predictions
    /// (empty file) is simply absent from the aggregates.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(&run_dir.join("manifest.json"))?;
        let suite =
            manifest.suite().map_err(|message| Error::Manifest { path: run_dir.join("manifest.json"), message })?;
        let mut notes = Vec::new();
        let mut variants = Vec::with_capacity(manifest.variants.len());
        for info in &manifest.variants {
            variants.push(load_variant(&run_dir.join(&info.name), info, suite, &mut notes)?);
        }
        let mut datasets = manifest.datasets.clone();
        let mut extra: Vec<String> =
            variants.iter().flat_map(|v| v.datasets.keys()).filter(|d| !datasets.contains(d)).cloned().collect();
        extra.sort();
        extra.dedup();
        datasets.extend(extra);
        Ok(RunSummary { manifest, suite, datasets, variants, notes })
    }

    /// The baseline: `name`, else the manifest's baseline, else the first variant.
    pub fn baseline(&self, name: Option<&str>) -> Result<&VariantSummary> {
        let name = name.or(self.manifest.baseline.as_deref());
        let found = match name {
            Some(name) => self.variants.iter().find(|v| v.name() == name),
            None => self.variants.first(),
        };
        found.ok_or_else(|| Error::UnknownBaseline {
            name: name.unwrap_or_default().to_string(),
            known: self.variants.iter().map(VariantSummary::name).collect::<Vec<_>>().join(", "),
        })
    }

    /// `variant`'s score divided by the baseline's, per dataset of [`RunSummary::datasets`];
    /// `None` where either is missing or the baseline scores 0.
    pub fn normalized(&self, variant: &VariantSummary, baseline: &VariantSummary) -> Vec<Option<f64>> {
        self.datasets
            .iter()
            .map(|d| match (variant.score(d), baseline.score(d)) {
                (Some(s), Some(b)) if b != 0.0 => Some(s / b),
                _ => None,
            })
            .collect()
    }

    /// The mean of [`RunSummary::normalized`] over the datasets where it is defined.
    pub fn normalized_average(&self, variant: &VariantSummary, baseline: &VariantSummary) -> Option<f64> {
        mean(self.normalized(variant, baseline).into_iter().flatten())
    }

    /// The mean of `variant`'s dataset scores, with how many datasets it covers.
    pub fn average(&self, variant: &VariantSummary) -> Option<(f64, usize)> {
        let scores: Vec<f64> = self.datasets.iter().filter_map(|d| variant.score(d)).collect();
        mean(scores.iter().copied()).map(|m| (m, scores.len()))
    }

    /// Groups of at least two variants that differ by a numeric parameter, by group name.
    /// The parameter is the first (by name) whose values are all numbers and not all equal.
    pub fn sweeps(&self) -> Vec<Sweep> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, v) in self.variants.iter().enumerate() {
            if let Some(g) = &v.info.group {
                groups.entry(g).or_default().push(i);
            }
        }
        let mut sweeps = Vec::new();
        for (group, members) in groups {
            let first = &self.variants[members[0]].info.params;
            let param = first.keys().find(|key| {
                let values: Vec<Option<f64>> =
                    members.iter().map(|&i| self.variants[i].info.params.get(*key).and_then(Value::as_f64)).collect();
                values.iter().all(Option::is_some) && values.iter().any(|x| *x != values[0])
            });
            let (Some(param), true) = (param, members.len() >= 2) else { continue };
            let mut points: Vec<(f64, usize)> =
                members.iter().map(|&i| (self.variants[i].info.params[param].as_f64().unwrap_or(0.0), i)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            sweeps.push(Sweep { group: group.to_string(), param: param.clone(), points });
        }
        sweeps
    }
}

/// The arithmetic mean, `None` for no values.
pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn load_variant(dir: &Path, info: &VariantInfo, suite: Suite, notes: &mut Vec<String>) -> Result<VariantSummary> {
    let mut summary = VariantSummary { info: info.clone(), datasets: BTreeMap::new(), failed: BTreeMap::new() };
    if !dir.is_dir() {
        notes.push(format!("`{}`: no predictions (the variant did not run)", info.name));
        return Ok(summary);
    }
    summary.failed = load_failed(&dir.join("failed"))?;
    let files = match prediction_files(dir, suite) {
        Ok(files) => files,
        Err(longctx_bench::Error::NoPredictionFiles { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let result_path = dir.join("result.json");
    let official = if result_path.is_file() { read_result_json(&result_path)? } else { BTreeMap::new() };
    let options = ScoreOptions { suite, ..ScoreOptions::default() };
    for (spec, path) in files {
        let predictions = read_predictions(&path)?;
        if predictions.is_empty() {
            continue;
        }
        let scored = score_predictions(spec, &path, &predictions, &options)?;
        let mut d = DatasetSummary {
            score: py_round2(100.0 * scored.per_sample.iter().fold(0.0, |s, x| s + x) / predictions.len() as f64),
            buckets: buckets(&predictions, &scored.per_sample),
            source: ScoreSource::Predictions,
            usage: Usage::of(&path, &predictions)?,
        };
        let here = format!("`{}` / `{}`", info.name, spec.name);
        match (official.get(spec.name), scored.score) {
            (None, _) => notes.push(format!("{here}: scores computed from the predictions (no result.json entry)")),
            (Some(DatasetScore::Total(x)), DatasetScore::Total(computed)) => {
                if !same(*x, computed) {
                    notes.push(format!("{here}: result.json says {x}, the predictions score {computed} (stale result.json?); showing result.json"));
                }
                d.score = *x;
                d.source = ScoreSource::ResultJson;
            }
            (Some(DatasetScore::Buckets(b)), DatasetScore::Buckets(computed)) => {
                if b.iter().zip(computed).any(|(x, c)| !same(*x, c)) {
                    notes.push(format!("{here}: result.json's buckets {b:?} differ from the predictions' {computed:?} (stale result.json?); showing result.json"));
                }
                for (bucket, x) in d.buckets.iter_mut().zip(b) {
                    bucket.score = (!x.is_nan()).then_some(*x);
                }
                d.source = ScoreSource::ResultJson;
            }
            (Some(_), _) => notes.push(format!(
                "{here}: result.json's entry does not match the suite {suite:?}; scores computed from the predictions"
            )),
        }
        summary.datasets.insert(spec.name.to_string(), d);
    }
    Ok(summary)
}

/// Equal as printed to 2 decimals (NaN equals NaN: an empty bucket).
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() < 0.005
}

/// Per-bucket scores as LongBench-E's `scorer_e` computes them; samples without `length` are
/// left out.
fn buckets(predictions: &[Prediction], per_sample: &[f64]) -> [Bucket; 3] {
    let mut scores: [Vec<f64>; 3] = Default::default();
    for (p, s) in predictions.iter().zip(per_sample) {
        if let Some(length) = p.length {
            scores[bucket_of(length)].push(*s);
        }
    }
    scores.map(|s| Bucket { samples: s.len(), score: (!s.is_empty()).then(|| np_round2(100.0 * np_mean(&s))) })
}

/// Reads LongBench's `result.json`: `{dataset: score}` or `{dataset: {"0-4k": .., "4-8k": ..,
/// "8k+": ..}}`, with `NaN` for an empty bucket (Python's `json.dump` writes it bare).
pub fn read_result_json(path: &Path) -> Result<BTreeMap<String, DatasetScore>> {
    let bad = |message: String| Error::ResultJson { path: path.to_path_buf(), message };
    let text = fs_err::read_to_string(path)?;
    // Python writes NaN bare; JSON has no such token. Dataset names never contain it.
    let value: Value = serde_json::from_str(&text.replace("NaN", "null")).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(entries) = value else { return Err(bad("not a JSON object".into())) };
    let number = |v: &Value, key: &str| match v {
        Value::Null => Ok(f64::NAN),
        v => v.as_f64().ok_or_else(|| bad(format!("`{key}`: {v} is not a number"))),
    };
    let mut out = BTreeMap::new();
    for (name, v) in &entries {
        dataset(name).map_err(|e| bad(e.to_string()))?;
        let score = match v {
            Value::Object(b) => {
                let mut values = [0.0; 3];
                for (value, bucket) in values.iter_mut().zip(BUCKETS) {
                    let x = b.get(bucket).ok_or_else(|| bad(format!("`{name}` has no bucket `{bucket}`")))?;
                    *value = number(x, name)?;
                }
                DatasetScore::Buckets(values)
            }
            v => DatasetScore::Total(number(v, name)?),
        };
        out.insert(name.clone(), score);
    }
    Ok(out)
}

/// Reads `failed/<dataset>.jsonl` files: one `{"id", "dataset", "error"}` object per line.
fn load_failed(dir: &Path) -> Result<BTreeMap<String, FailedSamples>> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        let text = fs_err::read_to_string(&path)?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |message: String| Error::Jsonl { path: path.clone(), line: i + 1, message };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
            let name = v
                .get("dataset")
                .and_then(Value::as_str)
                .map_or_else(|| path.file_stem().unwrap_or_default().to_string_lossy().into_owned(), str::to_string);
            let error = v.get("error").and_then(Value::as_str).unwrap_or("(no message)");
            let entry = out.entry(name).or_insert_with(|| FailedSamples { count: 0, first_error: error.to_string() });
            entry.count += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use longctx_bench::score::score_dir;
    use serde_json::json;

    fn write_lines(path: &Path, lines: &[Value]) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
        fs_err::write(path, text).unwrap();
    }

    fn line(pred: &str, answer: &str, length: u64, prompt: u64) -> Value {
        json!({"pred": pred, "answers": [answer], "all_classes": null, "length": length,
               "prompt_tokens": prompt, "original_tokens": 2 * prompt, "cost_usd": 0.001, "latency_s": 0.5})
    }

    fn manifest(dir: &Path, suite: &str, variants: Value) {
        let m = json!({"schema_version": 1, "experiment": "t", "suite": suite,
                       "datasets": ["qasper", "multifieldqa_zh"], "variants": variants});
        fs_err::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }

    /// Two variants: `full` answers everything right, `cut` half; no result.json.
    fn run(suite: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        manifest(
            dir.path(),
            suite,
            json!([{"name": "full", "group": "full"}, {"name": "cut", "group": "cut", "params": {}}]),
        );
        let qasper = |v: &str, wrong: bool| {
            let p = |answer: &'static str, ok: bool| if ok { answer } else { "no idea" };
            write_lines(
                &dir.path().join(v).join("qasper.jsonl"),
                &[
                    line("the answer is forty two", "forty two", 1200, 100),
                    line(p("forty two", !wrong), "forty two", 5000, 300),
                    line(p("forty two", true), "forty two", 9000, 500),
                ],
            );
        };
        qasper("full", false);
        qasper("cut", true);
        write_lines(&dir.path().join("full/multifieldqa_zh.jsonl"), &[line("北京是首都", "北京", 3000, 50)]);
        write_lines(&dir.path().join("cut/multifieldqa_zh.jsonl"), &[line("上海", "北京", 3000, 25)]);
        dir
    }

    #[test]
    fn scores_without_result_json_equal_the_bench_scorer() {
        for (suite, bench_suite) in [("longbench", Suite::LongBench), ("longbench-e", Suite::LongBenchE)] {
            let dir = run(suite);
            let s = RunSummary::load(dir.path()).unwrap();
            for v in &s.variants {
                let bench =
                    score_dir(&dir.path().join(v.name()), &ScoreOptions { suite: bench_suite, ..Default::default() })
                        .unwrap();
                for d in &bench.datasets {
                    let ours = &v.datasets[d.spec.name];
                    assert_eq!(ours.source, ScoreSource::Predictions);
                    match d.score {
                        DatasetScore::Total(x) => assert_eq!(ours.score, x),
                        DatasetScore::Buckets(b) => {
                            let got = ours.buckets.map(|b| b.score.unwrap_or(f64::NAN));
                            assert_eq!(format!("{got:?}"), format!("{b:?}"));
                        }
                    }
                }
            }
            assert!(s.notes.iter().any(|n| n.contains("no result.json entry")));
        }
    }

    #[test]
    fn aggregates_buckets_and_usage() {
        let dir = run("longbench");
        let s = RunSummary::load(dir.path()).unwrap();
        assert_eq!(s.datasets, ["qasper", "multifieldqa_zh"]);
        let cut = &s.variants[1];
        let q = &cut.datasets["qasper"];
        assert_eq!(q.buckets.map(|b| b.samples), [1, 1, 1]);
        assert_eq!(q.buckets[1].score, Some(0.0));
        assert_eq!(q.buckets[2].score, Some(100.0));
        assert_eq!(q.usage.prompt_tokens, 900.0);
        assert_eq!(q.usage.original_tokens, 1800.0);
        let u = cut.usage();
        assert_eq!((u.samples, u.prompt_tokens), (4, 925.0));
        assert!((u.cost_usd - 0.004).abs() < 1e-12);
        assert_eq!(s.variants[0].score("qasper"), Some(88.89));
        assert_eq!(s.average(&s.variants[0]).map(|a| a.1), Some(2));
    }

    #[test]
    fn normalization_with_a_zero_baseline() {
        let dir = run("longbench");
        let s = RunSummary::load(dir.path()).unwrap();
        let (full, cut) = (&s.variants[0], &s.variants[1]);
        assert_eq!(s.baseline(None).unwrap().name(), "full");
        let n = s.normalized(cut, full);
        assert_eq!(n[0], Some(cut.score("qasper").unwrap() / full.score("qasper").unwrap()));
        assert_eq!(n[1], Some(0.0));
        // `cut` scores 0 on multifieldqa_zh: as a baseline it leaves that dataset undefined.
        let m = s.normalized(full, cut);
        assert_eq!(m[1], None);
        assert_eq!(s.normalized_average(full, cut), m[0]);
        assert!(matches!(s.baseline(Some("nope")), Err(Error::UnknownBaseline { .. })));
    }

    #[test]
    fn result_json_wins_and_stale_numbers_are_noted() {
        let dir = run("longbench");
        fs_err::write(dir.path().join("full/result.json"), "{\n    \"qasper\": 12.5\n}").unwrap();
        let failed = json!({"id": "a", "dataset": "qasper", "error": "timeout"});
        write_lines(&dir.path().join("cut/failed/qasper.jsonl"), &[failed]);
        let s = RunSummary::load(dir.path()).unwrap();
        let q = &s.variants[0].datasets["qasper"];
        assert_eq!((q.score, q.source), (12.5, ScoreSource::ResultJson));
        assert!(s.notes.iter().any(|n| n.contains("`full` / `qasper`: result.json says 12.5")));
        assert_eq!(s.variants[1].failed["qasper"], FailedSamples { count: 1, first_error: "timeout".into() });
    }

    #[test]
    fn result_json_with_nan_buckets_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        fs_err::write(
            &path,
            "{\n    \"trec\": {\n        \"0-4k\": 50.0,\n        \"4-8k\": NaN,\n        \"8k+\": 1.5\n    }\n}",
        )
        .unwrap();
        let r = read_result_json(&path).unwrap();
        let DatasetScore::Buckets(b) = r["trec"] else { panic!() };
        assert!(b[0] == 50.0 && b[1].is_nan() && b[2] == 1.5);
        fs_err::write(&path, "{\"trec\": \"x\"}").unwrap();
        assert!(read_result_json(&path).unwrap_err().to_string().contains("result.json: `trec`"));

        let pred = dir.path().join("qasper.jsonl");
        write_lines(&pred, &[line("a", "a", 1, 1), json!({"pred": "a", "answers": ["a"], "prompt_tokens": "many"})]);
        let err = Usage::of(&pred, &read_predictions(&pred).unwrap()).unwrap_err().to_string();
        assert!(err.contains("qasper.jsonl:2: `prompt_tokens`"), "{err}");
    }

    #[test]
    fn sweeps_need_a_differing_numeric_param() {
        let dir = tempfile::tempdir().unwrap();
        manifest(
            dir.path(),
            "longbench",
            json!([{"name": "full", "group": "full"},
                   {"name": "rag-k50", "group": "rag", "params": {"k": 50, "model": "x"}},
                   {"name": "rag-k5", "group": "rag", "params": {"k": 5, "model": "x"}},
                   {"name": "c1", "group": "c", "params": {"rate": 0.5}},
                   {"name": "c2", "group": "c", "params": {"rate": 0.5}}]),
        );
        let s = RunSummary::load(dir.path()).unwrap();
        let sweeps = s.sweeps();
        assert_eq!(sweeps, [Sweep { group: "rag".into(), param: "k".into(), points: vec![(5.0, 2), (50.0, 1)] }]);
        assert_eq!(s.notes.len(), 5);
    }
}
