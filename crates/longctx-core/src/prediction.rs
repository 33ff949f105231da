//! One model prediction in LongBench's prediction-file format.

use serde::{Deserialize, Serialize};

/// One line of a LongBench prediction file (`<dataset>.jsonl`): the keys LongBench's `pred.py`
/// writes and `eval.py` reads. Extra keys (longctx writes `id`, `prompt_tokens`, …) are kept in
/// [`Prediction::extra`] and round-trip unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The model's output text.
    pub pred: String,
    /// Reference answers of the sample.
    pub answers: Vec<String>,
    /// Class names (classification datasets) or `null`.
    #[serde(default)]
    pub all_classes: Option<Vec<String>>,
    /// LongBench length of the sample; needed for LongBench-E buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Any other keys of the line.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}
