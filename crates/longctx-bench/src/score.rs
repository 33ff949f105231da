//! Scoring prediction files exactly as LongBench's `eval.py` (THUDM/LongBench @ 2e00731) does.
//!
//! A prediction directory holds `<dataset>.jsonl` files, one `{"pred", "answers",
//! "all_classes", "length"}` object per line. For every file (eval.py: every name ending in
//! `jsonl`; the dataset is the part of the name before the first `.`):
//!
//! * per sample, the prediction is cut to its first line for trec, triviaqa, samsum and lsht
//!   (`pred.lstrip('\n').split('\n')[0]`), and the score is the maximum of the metric over
//!   the answers, starting from 0;
//! * `all_classes` of the **last** line is used for every line of the file (eval.py keeps the
//!   variable of its reading loop);
//! * LongBench: `round(100 * sum / n, 2)` with a left-to-right sum and Python's rounding;
//! * LongBench-E: per bucket of `length` (`< 4000`, `< 8000`, else), `round(100 *
//!   np.mean(scores), 2)` with numpy's summation and rounding; an empty bucket is `NaN`.
//!
//! [`ScoreReport::result_json`] writes `result.json` byte for byte as `json.dump(scores, f,
//! ensure_ascii=False, indent=4)` does, with the datasets in file-name order (eval.py follows
//! `os.listdir`, whose order is arbitrary).
//!
//! Where eval.py would crash or silently misalign (an empty file, a line without `length`
//! under LongBench-E, a retrieval answer without a paragraph id), this module returns an
//! error naming the file and line instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use longctx_core::Prediction;

use crate::dataset::{dataset, DatasetSpec, Suite};
use crate::error::{Error, Result};
use crate::metrics::{MetricError, MetricOptions};
use crate::pyfloat::{np_mean, np_round2, py_repr, py_round2};

/// How to score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreOptions {
    /// LongBench (one score per dataset) or LongBench-E (one per length bucket).
    pub suite: Suite,
    /// Metric choices (fuzzywuzzy backend).
    pub metric: MetricOptions,
}

/// The LongBench-E length buckets, as eval.py names them.
pub const BUCKETS: [&str; 3] = ["0-4k", "4-8k", "8k+"];

/// The bucket index of a LongBench length.
pub fn bucket_of(length: u64) -> usize {
    if length < 4000 {
        0
    } else if length < 8000 {
        1
    } else {
        2
    }
}

/// A dataset's score as it appears in `result.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DatasetScore {
    /// LongBench: one number.
    Total(f64),
    /// LongBench-E: one number per bucket of [`BUCKETS`] (`NaN` when a bucket is empty).
    Buckets([f64; 3]),
}

/// The scores of one prediction file.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetResult {
    /// The dataset.
    pub spec: &'static DatasetSpec,
    /// The prediction file.
    pub path: PathBuf,
    /// Per-sample scores in [0, 1], in file order (not rounded).
    pub per_sample: Vec<f64>,
    /// The dataset score as eval.py reports it.
    pub score: DatasetScore,
}

/// The result of scoring a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// One entry per prediction file, in file-name order.
    pub datasets: Vec<DatasetResult>,
}

/// eval.py's per-sample score: the first-line rule, then the maximum over the answers.
pub fn sample_score(
    spec: &DatasetSpec,
    prediction: &str,
    answers: &[String],
    all_classes: Option<&[String]>,
    options: &MetricOptions,
) -> Result<f64, MetricError> {
    let prediction = if spec.first_line_only {
        prediction.trim_start_matches('\n').split('\n').next().unwrap_or("")
    } else {
        prediction
    };
    let mut score = 0.0f64;
    for answer in answers {
        let s = spec.metric.score(prediction, answer, all_classes, options)?;
        // Python's max(score, s) keeps the first of equal values; NaN never occurs.
        if s > score {
            score = s;
        }
    }
    Ok(score)
}

/// The prediction files of a directory, as eval.py selects them (names ending in `jsonl`),
/// with their datasets, sorted by file name. Unknown dataset names, two files for one
/// dataset, and a directory without prediction files are errors. Like eval.py `--e`,
/// LongBench-E scoring accepts any of the 21 datasets (with a warning for those outside
/// LongBench-E).
pub fn prediction_files(dir: &Path, suite: Suite) -> Result<Vec<(&'static DatasetSpec, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with("jsonl") || !entry.path().is_file() {
            continue;
        }
        files.push(name);
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::NoPredictionFiles { path: dir.to_path_buf() });
    }
    let mut out: Vec<(&'static DatasetSpec, PathBuf)> = Vec::with_capacity(files.len());
    for name in files {
        let stem = name.split('.').next().unwrap_or_default();
        let spec =
            dataset(stem).map_err(|e| Error::Parse { path: dir.join(&name), line: 0, message: e.to_string() })?;
        if suite == Suite::LongBenchE && !spec.in_longbench_e {
            // eval.py --e scores any LongBench dataset per bucket; so do we, with a warning.
            tracing::warn!("{name}: `{}` is not a LongBench-E dataset; scoring it per length bucket anyway", spec.name);
        }
        if let Some((_, first)) = out.iter().find(|(s, _)| s.name == spec.name) {
            return Err(Error::DuplicateDataset {
                dataset: spec.name.to_string(),
                first: first.clone(),
                second: dir.join(&name),
            });
        }
        out.push((spec, dir.join(name)));
    }
    Ok(out)
}

/// Reads a prediction file; a malformed line is reported with its number. Blank lines at the
/// end of the file are ignored; a blank line between predictions is an error (eval.py fails
/// on it too), so that line `N` of the file is always prediction `N`.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let reader = BufReader::new(fs_err::File::open(path)?);
    let mut predictions = Vec::new();
    let mut blank = None;
    for (i, line) in reader.lines().enumerate() {
        let parse = |message: String| Error::Parse { path: path.to_path_buf(), line: i + 1, message };
        let line = line.map_err(|e| parse(e.to_string()))?;
        if line.trim().is_empty() {
            blank.get_or_insert(i + 1);
            continue;
        }
        if let Some(b) = blank {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: b,
                message: "blank line between predictions".into(),
            });
        }
        let p: Prediction =
            serde_json::from_str(&line).map_err(|e| parse(format!("not a LongBench prediction line: {e}")))?;
        predictions.push(p);
    }
    Ok(predictions)
}

/// Scores the predictions of one file.
pub fn score_predictions(
    spec: &'static DatasetSpec,
    path: &Path,
    predictions: &[Prediction],
    options: &ScoreOptions,
) -> Result<DatasetResult> {
    let Some(last) = predictions.last() else {
        return Err(Error::EmptyPredictionFile { path: path.to_path_buf() });
    };
    let all_classes = last.all_classes.as_deref();
    let per_sample = predictions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            sample_score(spec, &p.pred, &p.answers, all_classes, &options.metric).map_err(|source| Error::Metric {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    let score = match options.suite {
        Suite::LongBench => {
            let mut total = 0.0;
            for s in &per_sample {
                total += s;
            }
            DatasetScore::Total(py_round2(100.0 * total / per_sample.len() as f64))
        }
        Suite::LongBenchE => {
            let buckets = predictions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p.length.map(bucket_of).ok_or_else(|| Error::Parse {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: "no `length`, which LongBench-E needs to bucket the sample".into(),
                    })
                })
                .collect::<Result<Vec<usize>>>()?;
            let mut values: [f64; 3] = [0.0; 3];
            for (b, value) in values.iter_mut().enumerate() {
                let scores: Vec<f64> =
                    per_sample.iter().zip(&buckets).filter(|(_, &bb)| bb == b).map(|(s, _)| *s).collect();
                *value = np_round2(100.0 * np_mean(&scores));
            }
            DatasetScore::Buckets(values)
        }
    };
    Ok(DatasetResult { spec, path: path.to_path_buf(), per_sample, score })
}

/// Scores every prediction file of `dir`.
pub fn score_dir(dir: &Path, options: &ScoreOptions) -> Result<ScoreReport> {
    let datasets = prediction_files(dir, options.suite)?
        .into_iter()
        .map(|(spec, path)| {
            let predictions = read_predictions(&path)?;
            score_predictions(spec, &path, &predictions, options)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ScoreReport { datasets })
}

impl ScoreReport {
    /// `result.json` exactly as eval.py's `json.dump(scores, f, ensure_ascii=False, indent=4)`
    /// writes it (no trailing newline).
    pub fn result_json(&self) -> String {
        if self.datasets.is_empty() {
            return "{}".into();
        }
        let entries: Vec<String> = self
            .datasets
            .iter()
            .map(|d| {
                let key = serde_json::to_string(d.spec.name).expect("string serializes");
                match d.score {
                    DatasetScore::Total(x) => format!("    {key}: {}", py_repr(x)),
                    DatasetScore::Buckets(b) => {
                        let inner: Vec<String> = BUCKETS
                            .iter()
                            .zip(b)
                            .map(|(name, x)| format!("        \"{name}\": {}", py_repr(x)))
                            .collect();
                        format!("    {key}: {{\n{}\n    }}", inner.join(",\n"))
                    }
                }
            })
            .collect();
        format!("{{\n{}\n}}", entries.join(",\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::dataset;

    fn pred(p: &str, answers: &[&str], length: u64) -> Prediction {
        Prediction {
            pred: p.into(),
            answers: answers.iter().map(|s| (*s).to_string()).collect(),
            all_classes: None,
            length: Some(length),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn first_line_rule_and_max_over_answers() {
        let trivia = dataset("triviaqa").unwrap();
        let o = MetricOptions::default();
        let answers = ["Paris".to_string(), "paris france".to_string()];
        assert_eq!(sample_score(trivia, "\n\nParis\nFrance", &answers, None, &o).unwrap(), 1.0);
        let qa = dataset("hotpotqa").unwrap();
        let paris = ["Paris".to_string()];
        assert_eq!(sample_score(qa, "Paris\nFrance", &paris, None, &o).unwrap(), 2.0 * 0.5 / 1.5);
    }

    #[test]
    fn buckets_and_nan() {
        let spec = dataset("qasper").unwrap();
        let preds = [pred("a b", &["a b"], 10), pred("x", &["a"], 5000)];
        let opts = ScoreOptions { suite: Suite::LongBenchE, ..Default::default() };
        let r = score_predictions(spec, Path::new("qasper.jsonl"), &preds, &opts).unwrap();
        let DatasetScore::Buckets(b) = r.score else { panic!() };
        assert_eq!(b[0], 100.0);
        assert_eq!(b[1], 0.0);
        assert!(b[2].is_nan());
        let report = ScoreReport { datasets: vec![r] };
        assert_eq!(
            report.result_json(),
            "{\n    \"qasper\": {\n        \"0-4k\": 100.0,\n        \"4-8k\": 0.0,\n        \"8k+\": NaN\n    }\n}"
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        let spec = dataset("qasper").unwrap();
        let err = score_predictions(spec, Path::new("q.jsonl"), &[], &ScoreOptions::default()).unwrap_err();
        assert!(matches!(err, Error::EmptyPredictionFile { .. }));
    }
}
