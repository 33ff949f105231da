//! Exact ports of LongBench's metrics (`LongBench/metrics.py`, THUDM/LongBench @ 2e00731).
//!
//! Each function returns what the Python function returns for one (prediction, answer) pair;
//! [`Metric::score`] dispatches on the dataset's metric. The per-sample rules of `eval.py`
//! (first line for some datasets, maximum over answers) live in [`crate::score`].
//!
//! ```
//! use longctx_bench::metrics::{Metric, MetricOptions};
//! let f1 = Metric::QaF1.score("The Eiffel Tower", "Eiffel tower", None, &MetricOptions::default()).unwrap();
//! assert_eq!(f1, 1.0);
//! ```

mod classification;
mod code_sim;
mod difflib;
pub mod jieba;
mod levenshtein;
pub(crate) mod pytext;
mod qa_f1;
mod retrieval;
mod rouge;

pub use classification::classification;
pub use code_sim::{code_sim, fuzz_ratio, FuzzBackend};
pub use qa_f1::{qa_f1, qa_f1_zh};
pub use retrieval::{count, retrieval};
pub use rouge::{
    rouge, rouge_l_f, rouge_zh, RougeFailure, PYTHON_RECURSION_LIMIT, RECURSION_HEADROOM_EN, RECURSION_HEADROOM_ZH,
};

/// The metric of a LongBench dataset (`dataset2metric` of eval.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `qa_f1_score`.
    QaF1,
    /// `qa_f1_zh_score`.
    QaF1Zh,
    /// `rouge_score` (ROUGE-L F).
    Rouge,
    /// `rouge_zh_score`.
    RougeZh,
    /// `classification_score`.
    Classification,
    /// `retrieval_score` (`Paragraph N`).
    Retrieval,
    /// `retrieval_zh_score` (`段落N`).
    RetrievalZh,
    /// `count_score`.
    Count,
    /// `code_sim_score`.
    CodeSim,
}

/// Options that select between equally "official" behaviours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricOptions {
    /// fuzzywuzzy's backend for `code_sim_score`.
    pub fuzz: FuzzBackend,
}

/// A (prediction, answer) pair that the reference cannot score: it raises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// `classification_score` needs `all_classes` (eval.py raises `TypeError` on `null`).
    #[error("classification needs `all_classes`, but it is null")]
    MissingClasses,
    /// The answer has no `Paragraph N` / `段落N` (eval.py raises `IndexError`).
    #[error("answer {answer:?} contains no paragraph id `{prefix}N`")]
    NoParagraphId {
        /// The answer.
        answer: String,
        /// `"Paragraph "` or `"段落"`.
        prefix: &'static str,
    },
}

impl Metric {
    /// The name of the Python function this metric ports.
    pub fn python_name(self) -> &'static str {
        match self {
            Metric::QaF1 => "qa_f1_score",
            Metric::QaF1Zh => "qa_f1_zh_score",
            Metric::Rouge => "rouge_score",
            Metric::RougeZh => "rouge_zh_score",
            Metric::Classification => "classification_score",
            Metric::Retrieval => "retrieval_score",
            Metric::RetrievalZh => "retrieval_zh_score",
            Metric::Count => "count_score",
            Metric::CodeSim => "code_sim_score",
        }
    }

    /// The metric's value for one prediction and one answer.
    pub fn score(
        self,
        prediction: &str,
        answer: &str,
        all_classes: Option<&[String]>,
        options: &MetricOptions,
    ) -> Result<f64, MetricError> {
        let paragraph = |prefix: &'static str| {
            retrieval(prediction, answer, prefix)
                .ok_or_else(|| MetricError::NoParagraphId { answer: answer.to_string(), prefix })
        };
        Ok(match self {
            Metric::QaF1 => qa_f1(prediction, answer),
            Metric::QaF1Zh => qa_f1_zh(prediction, answer),
            Metric::Rouge => rouge(prediction, answer),
            Metric::RougeZh => rouge_zh(prediction, answer),
            Metric::Classification => {
                classification(prediction, answer, all_classes.ok_or(MetricError::MissingClasses)?)
            }
            Metric::Retrieval => paragraph("Paragraph ")?,
            Metric::RetrievalZh => paragraph("段落")?,
            Metric::Count => count(prediction, answer),
            Metric::CodeSim => code_sim(prediction, answer, options.fuzz),
        })
    }
}
