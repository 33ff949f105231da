//! The run store: `<output_dir>/<experiment>/` with a manifest, one directory per variant and
//! one append-only prediction file per dataset.
//!
//! ```text
//! runs/<experiment>/manifest.json            Manifest (below)
//! runs/<experiment>/experiment.toml          the experiment file as given
//! runs/<experiment>/<variant>/<dataset>.jsonl   one prediction per line (LongBench's keys + ours)
//! runs/<experiment>/<variant>/result.json    eval.py's result.json for the variant
//! runs/<experiment>/<variant>/failed/<dataset>.jsonl   samples that failed: {"id", "dataset", "error"}
//! ```
//!
//! A prediction line is written in one `write` call and flushed as soon as its sample
//! finishes, so a killed run loses at most the line being written; reopening a file drops a
//! torn last line (no newline, not JSON) and reports any other bad line with its number.
//! When every sample of a dataset is done, the file is rewritten (atomically) in the
//! dataset's order, so an interrupted and resumed run leaves the same files as an
//! uninterrupted one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Version of the manifest and prediction formats.
pub const SCHEMA_VERSION: u32 = 1;

/// One variant as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestVariant {
    /// Directory name.
    pub name: String,
    /// Model name.
    pub model: String,
    /// The strategy with its parameters.
    pub strategy: Value,
    /// Name without the swept parameters.
    pub group: String,
    /// Swept numeric parameters.
    pub params: BTreeMap<String, f64>,
    /// Hash of what determines its predictions.
    pub hash: String,
}

/// One model as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestModel {
    /// Name.
    pub name: String,
    /// `native` or `openai`.
    pub backend: String,
    /// What served it (`native:file.gguf`, `openai:model@url`); empty until it was loaded.
    pub describe: String,
    /// The context window it claims (native models; after any RoPE scaling), once loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
}

/// Totals over every prediction of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Predictions written.
    pub samples: u64,
    /// Samples whose last attempt failed.
    pub failed: u64,
    /// US dollars.
    pub cost_usd: f64,
    /// Prompt tokens the model received.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// One invocation of `longctx run` on the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// RFC 3339 start.
    pub started_at: String,
    /// RFC 3339 end (null while running or after a kill).
    pub finished_at: Option<String>,
    /// How it ended.
    pub status: String,
    /// Predictions it wrote.
    pub written: u64,
}

/// `manifest.json`: what the run is (config, hashes, versions) and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The experiment's name.
    pub experiment: String,
    /// Hash of the variants' hashes.
    pub config_hash: String,
    /// The experiment as parsed.
    pub config: Value,
    /// longctx's version.
    pub longctx_version: String,
    /// The git commit longctx was built from, when known.
    pub git_hash: Option<String>,
    /// `longbench` or `longbench-e`.
    pub suite: String,
    /// The baseline variant of the report.
    pub baseline: String,
    /// Datasets.
    pub datasets: Vec<String>,
    /// Variants.
    pub variants: Vec<ManifestVariant>,
    /// Models.
    pub models: Vec<ManifestModel>,
    /// Start of the first session.
    pub started_at: String,
    /// End of the last complete session.
    pub finished_at: Option<String>,
    /// `running`, `complete`, `incomplete` (failed samples), `interrupted` or
    /// `budget_exhausted`.
    pub status: String,
    /// Totals.
    pub totals: Totals,
    /// Every invocation.
    pub sessions: Vec<Session>,
}

impl Manifest {
    /// `<dir>/manifest.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// The manifest of run directory `dir`, if it has one.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        if !path.is_file() {
            return Ok(None);
        }
        let text = fs_err::read_to_string(&path)?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("not a run manifest: {e}")).in_file(&path))?;
        if m.schema_version > SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "schema version {} is newer than this longctx ({SCHEMA_VERSION})",
                m.schema_version
            ))
            .in_file(&path));
        }
        Ok(Some(m))
    }

    /// Writes the manifest atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        write_atomic(&Self::path(dir), text.as_bytes())
    }
}

/// Writes `bytes` to `path` atomically ([`longctx_core::fs::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(longctx_core::fs::write_atomic(path, bytes)?)
}

fn bad_line(path: &Path, line: usize, message: String) -> Error {
    Error::BadLine { path: path.to_path_buf(), line, message }
}

/// Reads a JSONL file of objects with an `id`: the lines in order. A torn last line (no
/// newline and not JSON, as a kill leaves it) is cut off the file; any other bad line is an
/// error naming the file and line.
pub fn read_lines(path: &Path) -> Result<Vec<Value>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let bytes = fs_err::read(path)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while pos < bytes.len() {
        line_no += 1;
        let end = bytes[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i);
        let line = &bytes[pos..end.unwrap_or(bytes.len())];
        match (serde_json::from_slice::<Value>(line), end) {
            (Ok(v), _) if v.get("id").and_then(Value::as_str).is_some() => out.push(v),
            (_, None) => {
                tracing::warn!("{}: dropping a torn last line ({} bytes)", path.display(), line.len());
                let f = fs_err::OpenOptions::new().write(true).open(path)?;
                f.set_len(pos as u64)?;
                break;
            }
            (Ok(_), Some(_)) => return Err(bad_line(path, line_no, "the line has no string `id`".into())),
            (Err(e), Some(_)) => return Err(bad_line(path, line_no, format!("not a JSON object: {e}"))),
        }
        pos = end.map_or(bytes.len(), |e| e + 1);
    }
    Ok(out)
}

/// An append-only JSONL file, opened at the first line written.
struct Appender {
    path: PathBuf,
    file: Option<fs_err::File>,
}

impl Appender {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Appends one line in a single write and flushes it.
    fn append(&mut self, v: &Value) -> Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                fs_err::create_dir_all(dir)?;
            }
            self.file = Some(fs_err::OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let mut line = serde_json::to_string(v)?;
        line.push('\n');
        let f = self.file.as_mut().expect("opened above");
        f.write_all(line.as_bytes())?;
        f.flush()?;
        Ok(())
    }
}

/// The prediction and failure files of one variant and dataset, read once when opened and
/// kept in memory (with what this session appends), so that resuming, compaction and the
/// totals never read them again.
pub struct DatasetFiles {
    /// Predictions written so far (by id).
    pub done: HashSet<String>,
    /// The prediction lines, in the order written.
    predictions: Vec<Value>,
    /// The failure lines, in the order written.
    failures: Vec<Value>,
    prediction_file: Appender,
    failure_file: Appender,
    path: PathBuf,
    failed_path: PathBuf,
}

impl DatasetFiles {
    /// Opens (reads) `<variant_dir>/<dataset>.jsonl` and `<variant_dir>/failed/<dataset>.jsonl`,
    /// dropping a torn last line; a sample that appears twice is an error.
    pub fn open(variant_dir: &Path, dataset: &str) -> Result<Self> {
        let path = variant_dir.join(format!("{dataset}.jsonl"));
        let failed_path = variant_dir.join("failed").join(format!("{dataset}.jsonl"));
        let predictions = read_lines(&path)?;
        let mut done = HashSet::new();
        for (i, v) in predictions.iter().enumerate() {
            let id = v["id"].as_str().expect("read_lines checks ids").to_string();
            if !done.insert(id.clone()) {
                return Err(bad_line(&path, i + 1, format!("sample `{id}` appears twice")));
            }
        }
        let failures = read_lines(&failed_path)?;
        Ok(Self {
            done,
            predictions,
            failures,
            prediction_file: Appender::new(path.clone()),
            failure_file: Appender::new(failed_path.clone()),
            path,
            failed_path,
        })
    }

    /// The prediction lines (those of earlier sessions, then this session's).
    pub fn predictions(&self) -> &[Value] {
        &self.predictions
    }

    /// The samples whose last attempt failed and that have no prediction.
    pub fn failed(&self) -> usize {
        let failed: HashSet<&str> =
            self.failures.iter().filter_map(|f| f["id"].as_str()).filter(|id| !self.done.contains(*id)).collect();
        failed.len()
    }

    /// The cost of the predictions written so far.
    pub fn cost(&self) -> f64 {
        self.predictions.iter().map(|v| v["cost_usd"].as_f64().unwrap_or(0.0)).sum()
    }

    /// Appends a prediction (one write, flushed).
    pub fn write_prediction(&mut self, id: &str, v: Value) -> Result<()> {
        self.prediction_file.append(&v)?;
        self.done.insert(id.to_string());
        self.predictions.push(v);
        Ok(())
    }

    /// Appends a failure (one write, flushed).
    pub fn write_failure(&mut self, v: Value) -> Result<()> {
        self.failure_file.append(&v)?;
        self.failures.push(v);
        Ok(())
    }

    /// Rewrites the predictions in `order` (the dataset's ids) and keeps only the last
    /// failure of each sample that still has no prediction. Returns the number of failures
    /// left.
    pub fn compact(&mut self, order: &[String]) -> Result<usize> {
        self.prediction_file = Appender::new(self.path.clone());
        self.failure_file = Appender::new(self.failed_path.clone());
        let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let position = |v: &Value| rank.get(v["id"].as_str().unwrap_or_default()).copied().unwrap_or(usize::MAX);
        // A stable sort: ids outside `order` keep their relative order at the end.
        self.predictions.sort_by_key(position);
        if !self.predictions.is_empty() {
            write_atomic(&self.path, jsonl(&self.predictions)?.as_bytes())?;
        }
        let mut last: BTreeMap<usize, Value> = BTreeMap::new();
        for f in &self.failures {
            if !self.done.contains(f["id"].as_str().unwrap_or_default()) {
                last.insert(position(f), f.clone());
            }
        }
        self.failures = last.into_values().collect();
        if self.failures.is_empty() {
            if self.failed_path.is_file() {
                fs_err::remove_file(&self.failed_path)?;
            }
        } else {
            write_atomic(&self.failed_path, jsonl(&self.failures)?.as_bytes())?;
        }
        Ok(self.failures.len())
    }
}

/// Values as JSON lines.
fn jsonl(values: &[Value]) -> Result<String> {
    let mut text = String::new();
    for v in values {
        text.push_str(&serde_json::to_string(v)?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_middle_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        fs_err::write(&p, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"pr").unwrap();
        let lines = read_lines(&p).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(fs_err::read_to_string(&p).unwrap(), "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        fs_err::write(&p, "{\"id\":\"a\"}\nnot json\n{\"id\":\"b\"}\n").unwrap();
        let err = read_lines(&p).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!("{}:2: not a JSON object: expected ident at line 1 column 2", p.display())),
            "{err}"
        );
    }

    #[test]
    fn resume_skips_done_ids_and_compaction_restores_dataset_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DatasetFiles::open(dir.path(), "qasper").unwrap();
        f.write_prediction("b", json!({"id": "b", "pred": "2", "cost_usd": 0.5})).unwrap();
        f.write_failure(json!({"id": "a", "error": "boom"})).unwrap();
        f.write_failure(json!({"id": "c", "error": "boom"})).unwrap();
        drop(f);
        let mut f = DatasetFiles::open(dir.path(), "qasper").unwrap();
        assert!(f.done.contains("b") && !f.done.contains("a"));
        assert_eq!((f.cost(), f.failed()), (0.5, 2));
        f.write_prediction("a", json!({"id": "a", "pred": "1"})).unwrap();
        assert_eq!(f.failed(), 1);
        let left = f.compact(&["a".into(), "b".into(), "c".into()]).unwrap();
        assert_eq!(left, 1);
        assert_eq!(f.predictions().len(), 2);
        let text = fs_err::read_to_string(dir.path().join("qasper.jsonl")).unwrap();
        assert_eq!(text, "{\"id\":\"a\",\"pred\":\"1\"}\n{\"cost_usd\":0.5,\"id\":\"b\",\"pred\":\"2\"}\n");
        let failed = fs_err::read_to_string(dir.path().join("failed/qasper.jsonl")).unwrap();
        assert_eq!(failed, "{\"error\":\"boom\",\"id\":\"c\"}\n");
        let dup = dir.path().join("dup");
        fs_err::create_dir_all(&dup).unwrap();
        fs_err::write(dup.join("x.jsonl"), "{\"id\":\"a\"}\n{\"id\":\"a\"}\n").unwrap();
        assert!(DatasetFiles::open(&dup, "x").err().unwrap().to_string().contains("appears twice"));
    }
}
