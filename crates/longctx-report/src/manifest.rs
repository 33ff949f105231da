//! The run manifest (`RUN_DIR/manifest.json`, schema version 1), as `longctx run` writes it.
//!
//! Only the keys a report shows are read; others (`config`, keys of later minor revisions) are
//! ignored, and every key but `schema_version` and `variants` may be absent.

use std::collections::BTreeMap;
use std::path::Path;

use longctx_bench::dataset::Suite;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The manifest schema version this crate reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The parts of `manifest.json` that a report uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Manifest {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The experiment's name.
    #[serde(default)]
    pub experiment: String,
    /// sha256 of the canonical experiment configuration.
    #[serde(default)]
    pub config_hash: String,
    /// Version of longctx that wrote the run.
    #[serde(default)]
    pub longctx_version: Option<String>,
    /// Git commit of longctx, when known.
    #[serde(default)]
    pub git_hash: Option<String>,
    /// `longbench`, `longbench-e` or `ruler`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// The variant scores are normalized to.
    #[serde(default)]
    pub baseline: Option<String>,
    /// Datasets of the run, in run order.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// The variants (model × strategy), in run order.
    pub variants: Vec<VariantInfo>,
    /// The models of the run.
    #[serde(default)]
    pub models: Vec<ModelInfo>,
    /// RFC 3339 start time.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339 end time (`null` while running or when interrupted).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// `running`, `complete`, `interrupted` or `budget_exhausted`.
    #[serde(default)]
    pub status: String,
    /// Totals over the run.
    #[serde(default)]
    pub totals: Totals,
    /// The experiment's configuration (RULER reports read its threshold).
    #[serde(default)]
    pub config: serde_json::Value,
}

fn default_suite() -> String {
    "longbench".into()
}

/// One variant of the run: a model with a context strategy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VariantInfo {
    /// The variant's name, also its directory name.
    pub name: String,
    /// The model's name (see [`Manifest::models`]).
    #[serde(default)]
    pub model: Option<String>,
    /// The strategy configuration (`{"kind": ...}`).
    #[serde(default)]
    pub strategy: serde_json::Value,
    /// Variants of one group differ only by `params` (a k sweep).
    #[serde(default)]
    pub group: Option<String>,
    /// The values that set this variant apart within its group.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// One model of the run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelInfo {
    /// The model's name in the experiment.
    pub name: String,
    /// `native`, `openai`, …
    #[serde(default)]
    pub backend: Option<String>,
    /// What exactly runs (weights file or endpoint and model id).
    #[serde(default)]
    pub describe: Option<String>,
    /// The context window the model claims (native models), in tokens.
    #[serde(default)]
    pub window: Option<usize>,
}

/// Totals over a run, as the runner counted them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// Samples predicted.
    pub samples: u64,
    /// Samples that failed.
    pub failed: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Prompt tokens sent.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Manifest {
    /// Reads and checks `path` (a `manifest.json`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)?;
        let bad = |message: String| Error::Manifest { path: path.to_path_buf(), message };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a run manifest: {e}")))?;
        if manifest.schema_version != SCHEMA_VERSION {
            return Err(bad(format!(
                "schema_version {} is not supported (this longctx reads {SCHEMA_VERSION})",
                manifest.schema_version
            )));
        }
        if manifest.suite != "ruler" && manifest.suite != "longbench-chat" {
            manifest.suite().map_err(bad)?;
        }
        if let Some(v) = manifest.variants.iter().find(|v| !is_plain_name(&v.name)) {
            return Err(bad(format!("variant name {:?} is not a plain directory name", v.name)));
        }
        Ok(manifest)
    }

    /// The suite named by the `suite` key.
    pub fn suite(&self) -> Result<Suite, String> {
        match self.suite.as_str() {
            "longbench" => Ok(Suite::LongBench),
            "longbench-e" => Ok(Suite::LongBenchE),
            other => Err(format!("unknown suite `{other}` (expected `longbench` or `longbench-e`)")),
        }
    }
}

/// A name that is safe as one path component.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_manifest_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        fs_err::write(&path, r#"{"schema_version": 1, "variants": [{"name": "full"}], "config": {"x": 1}}"#).unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(m.suite().unwrap(), Suite::LongBench);
        assert_eq!(m.variants[0].name, "full");
        assert_eq!(m.totals, Totals::default());

        fs_err::write(&path, r#"{"schema_version": 2, "variants": []}"#).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("schema_version 2"), "{err}");
        fs_err::write(&path, r#"{"schema_version": 1, "suite": "babilong", "variants": []}"#).unwrap();
        assert!(Manifest::load(&path).unwrap_err().to_string().contains("unknown suite `babilong`"));
        fs_err::write(&path, r#"{"schema_version": 1, "variants": [{"name": "../x"}]}"#).unwrap();
        assert!(Manifest::load(&path).unwrap_err().to_string().contains("plain directory name"));
    }
}
