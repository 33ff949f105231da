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

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the manifest and prediction formats.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// One variant as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManifestVariant {
    /// Directory name.
    pub(crate) name: String,
    /// Model name.
    pub(crate) model: String,
    /// The strategy with its parameters.
    pub(crate) strategy: Value,
    /// Name without the swept parameters.
    pub(crate) group: String,
    /// Swept numeric parameters.
    pub(crate) params: BTreeMap<String, f64>,
    /// Hash of what determines its predictions.
    pub(crate) hash: String,
}

/// One model as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManifestModel {
    /// Name.
    pub(crate) name: String,
    /// `native` or `openai`.
    pub(crate) backend: String,
    /// What served it (`native:file.gguf`, `openai:model@url`); empty until it was loaded.
    pub(crate) describe: String,
}

/// Totals over every prediction of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Totals {
    /// Predictions written.
    pub(crate) samples: u64,
    /// Samples whose last attempt failed.
    pub(crate) failed: u64,
    /// US dollars.
    pub(crate) cost_usd: f64,
    /// Prompt tokens the model received.
    pub(crate) prompt_tokens: u64,
    /// Tokens generated.
    pub(crate) completion_tokens: u64,
}

/// One invocation of `longctx run` on the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// RFC 3339 start.
    pub(crate) started_at: String,
    /// RFC 3339 end (null while running or after a kill).
    pub(crate) finished_at: Option<String>,
    /// How it ended.
    pub(crate) status: String,
    /// Predictions it wrote.
    pub(crate) written: u64,
}

/// `manifest.json`: what the run is (config, hashes, versions) and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub(crate) schema_version: u32,
    /// The experiment's name.
    pub(crate) experiment: String,
    /// Hash of the variants' hashes.
    pub(crate) config_hash: String,
    /// The experiment as parsed.
    pub(crate) config: Value,
    /// longctx's version.
    pub(crate) longctx_version: String,
    /// The git commit longctx was built from, when known.
    pub(crate) git_hash: Option<String>,
    /// `longbench` or `longbench-e`.
    pub(crate) suite: String,
    /// The baseline variant of the report.
    pub(crate) baseline: String,
    /// Datasets.
    pub(crate) datasets: Vec<String>,
    /// Variants.
    pub(crate) variants: Vec<ManifestVariant>,
    /// Models.
    pub(crate) models: Vec<ManifestModel>,
    /// Start of the first session.
    pub(crate) started_at: String,
    /// End of the last complete session.
    pub(crate) finished_at: Option<String>,
    /// `running`, `complete`, `incomplete` (failed samples), `interrupted` or
    /// `budget_exhausted`.
    pub(crate) status: String,
    /// Totals.
    pub(crate) totals: Totals,
    /// Every invocation.
    pub(crate) sessions: Vec<Session>,
}

impl Manifest {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    pub(crate) fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        if !path.is_file() {
            return Ok(None);
        }
        let text = fs_err::read_to_string(&path)?;
        let m: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{}: not a run manifest", path.display()))?;
        if m.schema_version > SCHEMA_VERSION {
            bail!(
                "{}: schema version {} is newer than this longctx ({SCHEMA_VERSION})",
                path.display(),
                m.schema_version
            );
        }
        Ok(Some(m))
    }

    /// Writes the manifest atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        write_atomic(&Self::path(dir), text.as_bytes())
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// Reads a JSONL file of objects with an `id`: the lines in order. A torn last line (no
/// newline and not JSON, as a kill leaves it) is cut off the file; any other bad line is an
/// error naming the file and line.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<Value>> {
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
            (Ok(_), Some(_)) => bail!("{}:{line_no}: the line has no string `id`", path.display()),
            (Err(e), Some(_)) => bail!("{}:{line_no}: not a JSON object: {e}", path.display()),
        }
        pos = end.map_or(bytes.len(), |e| e + 1);
    }
    Ok(out)
}

/// An append-only JSONL file.
pub(crate) struct Appender {
    path: PathBuf,
    file: Option<fs_err::File>,
}

impl Appender {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Appends one line in a single write and flushes it.
    pub(crate) fn append(&mut self, v: &Value) -> Result<()> {
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

/// The prediction and failure files of one variant and dataset.
pub(crate) struct DatasetFiles {
    /// Predictions written so far (by id).
    pub(crate) done: HashSet<String>,
    /// Cost of the predictions already there.
    pub(crate) cost_so_far: f64,
    predictions: Appender,
    failures: Appender,
    failed_path: PathBuf,
    path: PathBuf,
}

impl DatasetFiles {
    pub(crate) fn open(variant_dir: &Path, dataset: &str) -> Result<Self> {
        let path = variant_dir.join(format!("{dataset}.jsonl"));
        let failed_path = variant_dir.join("failed").join(format!("{dataset}.jsonl"));
        let lines = read_lines(&path)?;
        let mut done = HashSet::new();
        let mut cost_so_far = 0.0;
        for (i, v) in lines.iter().enumerate() {
            let id = v["id"].as_str().expect("read_lines checks ids").to_string();
            if !done.insert(id.clone()) {
                bail!("{}:{}: sample `{id}` appears twice", path.display(), i + 1);
            }
            cost_so_far += v["cost_usd"].as_f64().unwrap_or(0.0);
        }
        read_lines(&failed_path)?;
        Ok(Self {
            done,
            cost_so_far,
            predictions: Appender::new(path.clone()),
            failures: Appender::new(failed_path.clone()),
            failed_path,
            path,
        })
    }

    pub(crate) fn write_prediction(&mut self, id: &str, v: &Value) -> Result<()> {
        self.predictions.append(v)?;
        self.done.insert(id.to_string());
        Ok(())
    }

    pub(crate) fn write_failure(&mut self, v: &Value) -> Result<()> {
        self.failures.append(v)
    }

    /// Rewrites the predictions in `order` (the dataset's ids) and keeps only the last
    /// failure of each sample that still has no prediction. Returns the number of failures
    /// left.
    pub(crate) fn compact(&mut self, order: &[String]) -> Result<usize> {
        self.predictions = Appender::new(self.path.clone());
        self.failures = Appender::new(self.failed_path.clone());
        let lines = read_lines(&self.path)?;
        let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let mut sorted: Vec<&Value> = lines.iter().collect();
        sorted.sort_by_key(|v| rank.get(v["id"].as_str().unwrap_or_default()).copied().unwrap_or(usize::MAX));
        if !sorted.is_empty() {
            let mut text = String::new();
            for v in sorted {
                text.push_str(&serde_json::to_string(v)?);
                text.push('\n');
            }
            write_atomic(&self.path, text.as_bytes())?;
        }
        let failures = read_lines(&self.failed_path)?;
        let mut last: BTreeMap<usize, &Value> = BTreeMap::new();
        for f in &failures {
            let id = f["id"].as_str().unwrap_or_default();
            if !self.done.contains(id) {
                last.insert(rank.get(id).copied().unwrap_or(usize::MAX), f);
            }
        }
        if last.is_empty() {
            if self.failed_path.is_file() {
                fs_err::remove_file(&self.failed_path)?;
            }
        } else {
            let mut text = String::new();
            for v in last.values() {
                text.push_str(&serde_json::to_string(v)?);
                text.push('\n');
            }
            write_atomic(&self.failed_path, text.as_bytes())?;
        }
        Ok(last.len())
    }
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
        f.write_prediction("b", &json!({"id": "b", "pred": "2", "cost_usd": 0.5})).unwrap();
        f.write_failure(&json!({"id": "a", "error": "boom"})).unwrap();
        f.write_failure(&json!({"id": "c", "error": "boom"})).unwrap();
        drop(f);
        let mut f = DatasetFiles::open(dir.path(), "qasper").unwrap();
        assert!(f.done.contains("b") && !f.done.contains("a"));
        assert_eq!(f.cost_so_far, 0.5);
        f.write_prediction("a", &json!({"id": "a", "pred": "1"})).unwrap();
        let left = f.compact(&["a".into(), "b".into(), "c".into()]).unwrap();
        assert_eq!(left, 1);
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
