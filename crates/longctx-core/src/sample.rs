//! One benchmark sample, as LongBench ships it.

use serde::{Deserialize, Serialize};

/// One benchmark record (LongBench's `input, context, answers, length, dataset, language,
/// all_classes, _id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The record's `_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The question or instruction; empty for some datasets (e.g. multi_news, lcc).
    pub input: String,
    /// The long context.
    pub context: String,
    /// Reference answers; a prediction scores the maximum over them.
    pub answers: Vec<String>,
    /// Class names for classification datasets (trec, lsht), `null` elsewhere.
    pub all_classes: Option<Vec<String>>,
    /// LongBench's length: words of input + context + answers for English, characters for
    /// Chinese. LongBench-E buckets on it.
    pub length: u64,
    /// Language of the record as written (`en`, `zh`; LongBench's code datasets use other
    /// values), kept as text so that no record is rejected for it.
    pub language: String,
    /// Dataset name as written in the record.
    pub dataset: String,
}

impl Sample {
    /// A record built by hand (tests, ad-hoc prompts, generated benchmarks): the given
    /// context and input, no answers or classes, length 0, English, in dataset `dataset`.
    ///
    /// ```
    /// use longctx_core::Sample;
    /// let s = Sample::new("x", "a long context", "a question?");
    /// assert_eq!((s.id.as_str(), s.context.as_str(), s.input.as_str()), ("x", "a long context", "a question?"));
    /// assert!(s.answers.is_empty() && s.all_classes.is_none());
    /// ```
    pub fn new(id: impl Into<String>, context: impl Into<String>, input: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            input: input.into(),
            context: context.into(),
            answers: Vec::new(),
            all_classes: None,
            length: 0,
            language: "en".into(),
            dataset: String::new(),
        }
    }
}
