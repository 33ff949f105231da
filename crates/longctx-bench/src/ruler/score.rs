//! RULER's scoring (`scripts/eval/evaluate.py` and `scripts/eval/synthetic/constants.py`):
//! predictions are stripped, control characters become newlines, and each task is scored
//! with `string_match_all` or `string_match_part` (case-insensitive substring matches),
//! rounded to two decimals as `round(score, 2)` does. Over lengths: the average of the tasks
//! per length, the effective length (the longest length whose average reaches the
//! threshold, 85.6 by default) and the weighted averages of RULER's README (wAvg inc:
//! weights 1…n from the shortest length to the longest; dec: n…1).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{task, Match};
use crate::error::{Error, Result};
use crate::metrics::pytext::is_space;
use crate::pyfloat::py_round2;

/// evaluate.py's `postprocess_pred`: strip, every character `\x00`–`\x1f` becomes `\n`,
/// strip again (Python's `str.strip`: Unicode whitespace and `\x1c`–`\x1f`).
pub fn postprocess(pred: &str) -> String {
    let replaced: String = pred.trim_matches(is_space).chars().map(|c| if c <= '\x1f' { '\n' } else { c }).collect();
    replaced.trim_matches(is_space).to_string()
}

fn found(reference: &str, pred_lower: &str) -> bool {
    pred_lower.contains(&reference.to_lowercase())
}

/// The score of one (postprocessed) prediction in 0..1: the share of references found
/// (`All`), or whether any is (`Part`).
pub fn line_score(metric: Match, pred: &str, refs: &[String]) -> f64 {
    let p = pred.to_lowercase();
    match metric {
        Match::All => {
            let hits: f64 = refs.iter().map(|r| if found(r, &p) { 1.0 } else { 0.0 }).sum();
            hits / refs.len() as f64
        }
        Match::Part => refs.iter().map(|r| if found(r, &p) { 1.0 } else { 0.0 }).fold(f64::NEG_INFINITY, f64::max),
    }
}

/// `string_match_all` / `string_match_part` over postprocessed predictions, `round(…, 2)`.
pub fn task_score(metric: Match, preds: &[String], refs: &[Vec<String>]) -> f64 {
    let sum: f64 = preds.iter().zip(refs).map(|(p, r)| line_score(metric, p, r)).sum();
    py_round2(sum / preds.len() as f64 * 100.0)
}

/// One prediction as the scorer needs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Line {
    /// The model's output.
    pub pred: String,
    /// The references (`answers`, RULER's `outputs`).
    #[serde(alias = "outputs")]
    pub answers: Vec<String>,
    /// The needle depth, for the depth sweep.
    #[serde(default)]
    pub depth: Option<f64>,
}

/// The score of one task at one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// RULER's task score (0–100, two decimals).
    pub score: f64,
    /// evaluate.py's `nulls`: empty predictions after postprocessing, `k/n`.
    pub nulls: String,
    /// Predictions.
    pub n: usize,
}

/// Scores one task's predictions at one length.
pub fn score_task(metric: Match, lines: &[Line]) -> TaskScore {
    let preds: Vec<String> = lines.iter().map(|l| postprocess(&l.pred)).collect();
    let refs: Vec<Vec<String>> = lines.iter().map(|l| l.answers.clone()).collect();
    let empty = preds.iter().filter(|p| p.is_empty()).count();
    TaskScore {
        score: if lines.is_empty() { 0.0 } else { task_score(metric, &preds, &refs) },
        nulls: format!("{empty}/{}", lines.len()),
        n: lines.len(),
    }
}

/// A depth × length cell of the needle sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthCell {
    /// Needle depth in percent.
    pub depth: f64,
    /// Target length.
    pub length: usize,
    /// `string_match_all` over the single-needle predictions at this depth and length.
    pub score: f64,
    /// Predictions.
    pub n: usize,
}

/// A RULER run scored: the table of RULER's README and the depth sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerResult {
    /// The tasks scored, in RULER's order.
    pub tasks: Vec<String>,
    /// The lengths, ascending.
    pub lengths: Vec<usize>,
    /// `scores[task][length]`.
    pub scores: BTreeMap<String, BTreeMap<usize, TaskScore>>,
    /// The mean of the task scores per length (`None` where no task has predictions).
    pub average: Vec<Option<f64>>,
    /// The mean over lengths.
    pub avg: Option<f64>,
    /// Weighted average, weights 1…n (long lengths weigh more).
    pub wavg_inc: Option<f64>,
    /// Weighted average, weights n…1.
    pub wavg_dec: Option<f64>,
    /// The threshold of the effective length.
    pub threshold: f64,
    /// The longest length whose average reaches the threshold (`None`: none does).
    pub effective_length: Option<usize>,
    /// The needle-depth sweep.
    pub depth: Vec<DepthCell>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Scores predictions grouped by `(task, length)` and aggregates them.
pub fn aggregate(groups: &BTreeMap<(String, usize), Vec<Line>>, threshold: f64) -> Result<RulerResult> {
    let mut scores: BTreeMap<String, BTreeMap<usize, TaskScore>> = BTreeMap::new();
    let mut lengths: Vec<usize> = groups.keys().map(|k| k.1).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut depth_cells: BTreeMap<(u64, usize), (f64, usize)> = BTreeMap::new();
    for ((name, length), lines) in groups {
        let t = task(name)?;
        scores.entry(name.clone()).or_default().insert(*length, score_task(t.metric(), lines));
        if t.single_needle() {
            for l in lines {
                if let Some(d) = l.depth {
                    let c = depth_cells.entry((d.to_bits(), *length)).or_insert((0.0, 0));
                    c.0 += line_score(Match::All, &postprocess(&l.pred), &l.answers);
                    c.1 += 1;
                }
            }
        }
    }
    let order: Vec<String> =
        super::TASKS.iter().map(|t| t.name.to_string()).filter(|n| scores.contains_key(n)).collect();
    let average: Vec<Option<f64>> = lengths
        .iter()
        .map(|len| mean(&scores.values().filter_map(|m| m.get(len)).map(|s| s.score).collect::<Vec<_>>()))
        .collect();
    let present: Vec<(usize, f64)> = average.iter().enumerate().filter_map(|(i, a)| a.map(|a| (i, a))).collect();
    let weighted = |w: &dyn Fn(usize) -> f64| {
        let total: f64 = present.iter().map(|&(i, _)| w(i)).sum();
        (total > 0.0).then(|| present.iter().map(|&(i, a)| w(i) * a).sum::<f64>() / total)
    };
    let n = lengths.len();
    let effective_length =
        lengths.iter().zip(&average).filter(|(_, a)| a.is_some_and(|a| a >= threshold)).map(|(l, _)| *l).max();
    let mut depth: Vec<DepthCell> = depth_cells
        .into_iter()
        .map(|((d, length), (sum, n))| DepthCell { depth: f64::from_bits(d), length, score: sum / n as f64 * 100.0, n })
        .collect();
    depth.sort_by(|a, b| a.depth.total_cmp(&b.depth).then(a.length.cmp(&b.length)));
    Ok(RulerResult {
        tasks: order,
        avg: mean(&present.iter().map(|p| p.1).collect::<Vec<_>>()),
        wavg_inc: weighted(&|i| (i + 1) as f64),
        wavg_dec: weighted(&|i| (n - i) as f64),
        lengths,
        scores,
        average,
        threshold,
        effective_length,
        depth,
    })
}

/// The `(task, length)` a prediction file `<task>-<length>.jsonl` holds, if its name is one.
pub fn file_key(file_name: &str) -> Option<(String, usize)> {
    let stem = file_name.strip_suffix(".jsonl")?;
    let (t, len) = stem.rsplit_once('-')?;
    let len: usize = len.parse().ok()?;
    task(t).ok().map(|_| (t.to_string(), len))
}

/// Scores a directory of `<task>-<length>.jsonl` prediction files (as `longctx run` writes
/// them for a RULER variant).
pub fn score_dir(dir: &Path, threshold: f64) -> Result<RulerResult> {
    let mut groups: BTreeMap<(String, usize), Vec<Line>> = BTreeMap::new();
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.filter_map(std::result::Result::ok).collect();
    entries.sort_by_key(fs_err::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(key) = file_key(&name) else { continue };
        let path = e.path();
        let reader = std::io::BufReader::new(fs_err::File::open(&path)?);
        let mut lines = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::Parse { path: path.clone(), line: i + 1, message };
            let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            lines.push(serde_json::from_value::<Line>(v).map_err(|e| bad(e.to_string()))?);
        }
        if !lines.is_empty() {
            groups.insert(key, lines);
        }
    }
    if groups.is_empty() {
        return Err(Error::NoPredictionFiles { path: dir.to_path_buf() });
    }
    aggregate(&groups, threshold)
}

impl RulerResult {
    /// The result as `result.json`: per task and length the score, nulls and count; the
    /// averages, weighted averages and effective length; the depth sweep.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "suite": "ruler",
            "threshold": self.threshold,
            "lengths": self.lengths,
            "tasks": self.scores,
            "average": self.lengths.iter().zip(&self.average).map(|(l, a)| (l.to_string(), *a)).collect::<BTreeMap<_, _>>(),
            "avg": self.avg,
            "wavg_inc": self.wavg_inc,
            "wavg_dec": self.wavg_dec,
            "effective_length": self.effective_length,
            "depth": self.depth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pred: &str, answers: &[&str]) -> Line {
        Line { pred: pred.into(), answers: answers.iter().map(std::string::ToString::to_string).collect(), depth: None }
    }

    #[test]
    fn postprocess_strips_and_turns_controls_into_newlines() {
        assert_eq!(postprocess("\u{3000} a\tb\x1f c \x1c"), "a\nb\n c");
        assert_eq!(postprocess("\x00\x01"), "");
    }

    #[test]
    fn all_counts_shares_and_part_any() {
        let refs = vec!["ABC".to_string(), "def".to_string()];
        assert_eq!(line_score(Match::All, "xx abc yy", &refs), 0.5);
        assert_eq!(line_score(Match::Part, "xx abc yy", &refs), 1.0);
        let s =
            score_task(Match::All, &[line("abc def", &["abc", "def"]), line("", &["x"]), line("x", &["x", "y", "z"])]);
        assert_eq!(s.score, 44.44);
        assert_eq!(s.nulls, "1/3");
    }

    #[test]
    fn effective_length_and_weighted_averages() {
        let mut g = BTreeMap::new();
        let ok = || vec![line("1234567", &["1234567"])];
        let bad = || vec![line("no", &["1234567"])];
        g.insert(("niah_single_1".to_string(), 1024), ok());
        g.insert(("niah_single_1".to_string(), 2048), ok());
        g.insert(("niah_single_1".to_string(), 4096), bad());
        g.insert(("vt".to_string(), 1024), ok());
        g.insert(("vt".to_string(), 2048), bad());
        g.insert(("vt".to_string(), 4096), bad());
        let r = aggregate(&g, 85.6).unwrap();
        assert_eq!(r.average, [Some(100.0), Some(50.0), Some(0.0)]);
        assert_eq!(r.effective_length, Some(1024));
        assert_eq!(r.wavg_inc, Some((100.0 + 2.0 * 50.0) / 6.0));
        assert_eq!(r.wavg_dec, Some((3.0 * 100.0 + 2.0 * 50.0) / 6.0));
        assert_eq!(aggregate(&g, 40.0).unwrap().effective_length, Some(2048));
        assert_eq!(file_key("niah_multikey_3-131072.jsonl"), Some(("niah_multikey_3".into(), 131_072)));
        assert_eq!(file_key("qasper.jsonl"), None);
    }
}
