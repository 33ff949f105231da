//! RULER (NVIDIA/RULER @ c3f5e3b): its 13 synthetic tasks as `scripts/synthetic.yaml`
//! configures them, their templates and answer prefixes word for word
//! (`scripts/data/synthetic/constants.py`), generators that fit each sample to a target length
//! in the model's own tokenizer ([`generate`]), and RULER's string-match scoring with the
//! effective length and weighted averages of its README ([`score`]).

pub mod data;
pub mod generate;
pub mod score;
mod sentences;

use crate::error::{Error, Result};

/// RULER's default threshold for the effective length: Llama-2-7B's average at 4k.
pub const DEFAULT_THRESHOLD: f64 = 85.6;

/// How a task's prediction is matched against its references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `string_match_all`: the share of the references found in the prediction.
    All,
    /// `string_match_part`: 1 when any reference is found.
    Part,
}

/// What fills a needle-in-a-haystack task's haystack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Haystack {
    /// One repeated filler paragraph (`noise`).
    Noise,
    /// Paul Graham's essays (`essay`), sentence by sentence.
    Essay,
    /// Other needles with random keys and values (`needle`).
    Needle,
}

/// What keys and values of needles are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Seven-digit numbers.
    Numbers,
    /// Adjective-noun pairs from wonderwords' lists (`hushed-cabbage`).
    Words,
    /// Version-4 UUIDs.
    Uuids,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Numbers => "numbers",
            Kind::Words => "words",
            Kind::Uuids => "uuids",
        }
    }
}

/// The QA datasets of qa_1 and qa_2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QaDataset {
    /// SQuAD v2 dev (`dev-v2.0.json`).
    Squad,
    /// HotpotQA dev, distractor setting (`hotpot_dev_distractor_v1.json`).
    HotpotQa,
}

/// A task's generator and its arguments (`synthetic.yaml`'s `task` and `args`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskKind {
    /// `niah.py`.
    Niah {
        /// `type_haystack`.
        haystack: Haystack,
        /// `type_needle_k`.
        keys: Kind,
        /// `type_needle_v`.
        values: Kind,
        /// `num_needle_k` (raised to `num_needle_q`, as niah.py does).
        num_keys: usize,
        /// `num_needle_v`.
        num_values: usize,
        /// `num_needle_q`.
        num_queries: usize,
    },
    /// `variable_tracking.py` (noise haystack, one in-context example).
    VariableTracking {
        /// `num_chains`.
        chains: usize,
        /// `num_hops`.
        hops: usize,
    },
    /// `common_words_extraction.py` (one few-shot example).
    CommonWords {
        /// `freq_cw`: repeats of each common word.
        freq_common: usize,
        /// `freq_ucw`: repeats of each uncommon word.
        freq_uncommon: usize,
        /// `num_cw`: common words asked for.
        num_common: usize,
    },
    /// `freq_words_extraction.py` (coded words drawn from a zeta distribution).
    FreqWords {
        /// The zeta distribution's exponent.
        alpha: f64,
    },
    /// `qa.py`.
    Qa(QaDataset),
}

/// One of RULER's tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Name as in `synthetic.yaml` (`niah_single_1`, `vt`, …).
    pub name: &'static str,
    /// The generator and its arguments.
    pub kind: TaskKind,
}

const fn niah(name: &'static str, haystack: Haystack, keys: Kind, values: Kind, k: usize, v: usize, q: usize) -> Task {
    Task { name, kind: TaskKind::Niah { haystack, keys, values, num_keys: k, num_values: v, num_queries: q } }
}

/// RULER's 13 default tasks, in `synthetic.yaml`'s order.
pub const TASKS: [Task; 13] = [
    niah("niah_single_1", Haystack::Noise, Kind::Words, Kind::Numbers, 1, 1, 1),
    niah("niah_single_2", Haystack::Essay, Kind::Words, Kind::Numbers, 1, 1, 1),
    niah("niah_single_3", Haystack::Essay, Kind::Words, Kind::Uuids, 1, 1, 1),
    niah("niah_multikey_1", Haystack::Essay, Kind::Words, Kind::Numbers, 4, 1, 1),
    niah("niah_multikey_2", Haystack::Needle, Kind::Words, Kind::Numbers, 1, 1, 1),
    niah("niah_multikey_3", Haystack::Needle, Kind::Uuids, Kind::Uuids, 1, 1, 1),
    niah("niah_multivalue", Haystack::Essay, Kind::Words, Kind::Numbers, 1, 4, 1),
    niah("niah_multiquery", Haystack::Essay, Kind::Words, Kind::Numbers, 1, 1, 4),
    Task { name: "vt", kind: TaskKind::VariableTracking { chains: 1, hops: 4 } },
    Task { name: "cwe", kind: TaskKind::CommonWords { freq_common: 30, freq_uncommon: 3, num_common: 10 } },
    Task { name: "fwe", kind: TaskKind::FreqWords { alpha: 2.0 } },
    Task { name: "qa_1", kind: TaskKind::Qa(QaDataset::Squad) },
    Task { name: "qa_2", kind: TaskKind::Qa(QaDataset::HotpotQa) },
];

/// `constants.py`'s niah template.
pub const NIAH_TEMPLATE: &str = "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?";
/// `constants.py`'s niah answer prefix.
pub const NIAH_PREFIX: &str = " The special magic {type_needle_v} for {query} mentioned in the provided text are";
/// `constants.py`'s variable-tracking template.
pub const VT_TEMPLATE: &str = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.";
/// `constants.py`'s variable-tracking answer prefix.
pub const VT_PREFIX: &str = " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ";
/// `constants.py`'s common-words template.
pub const CWE_TEMPLATE: &str = "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";
/// `constants.py`'s common-words answer prefix.
pub const CWE_PREFIX: &str = " Answer: The top 10 words that appear most often in the list are:";
/// `constants.py`'s frequent-words template.
pub const FWE_TEMPLATE: &str = "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?";
/// `constants.py`'s frequent-words answer prefix.
pub const FWE_PREFIX: &str =
    " Answer: According to the coded text above, the three most frequently appeared words are:";
/// `constants.py`'s QA template.
pub const QA_TEMPLATE: &str = "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}";
/// `constants.py`'s QA answer prefix.
pub const QA_PREFIX: &str = " Answer:";

impl Task {
    /// `tokens_to_generate` of the task's base type in `constants.py`.
    pub fn tokens_to_generate(&self) -> usize {
        match self.kind {
            TaskKind::Niah { .. } => 128,
            TaskKind::VariableTracking { .. } => 30,
            TaskKind::CommonWords { .. } => 120,
            TaskKind::FreqWords { .. } => 50,
            TaskKind::Qa(_) => 32,
        }
    }

    /// The template and answer prefix of the task's base type.
    pub fn template(&self) -> (&'static str, &'static str) {
        match self.kind {
            TaskKind::Niah { .. } => (NIAH_TEMPLATE, NIAH_PREFIX),
            TaskKind::VariableTracking { .. } => (VT_TEMPLATE, VT_PREFIX),
            TaskKind::CommonWords { .. } => (CWE_TEMPLATE, CWE_PREFIX),
            TaskKind::FreqWords { .. } => (FWE_TEMPLATE, FWE_PREFIX),
            TaskKind::Qa(_) => (QA_TEMPLATE, QA_PREFIX),
        }
    }

    /// The metric `scripts/eval/synthetic/constants.py` gives the task's base type.
    pub fn metric(&self) -> Match {
        match self.kind {
            TaskKind::Qa(_) => Match::Part,
            _ => Match::All,
        }
    }

    /// A single-needle task, whose needle depth can be swept (niah_single_1/2/3).
    pub fn single_needle(&self) -> bool {
        matches!(self.kind, TaskKind::Niah { num_keys: 1, num_values: 1, num_queries: 1, haystack, .. } if haystack != Haystack::Needle)
    }

    /// The data files the task needs beyond what longctx generates.
    pub fn needs(&self) -> Vec<data::Need> {
        use data::Need;
        match self.kind {
            TaskKind::Niah { haystack, keys, values, .. } => {
                let mut v = Vec::new();
                if haystack == Haystack::Essay {
                    v.push(Need::Essay);
                }
                if keys == Kind::Words || values == Kind::Words {
                    v.push(Need::Words);
                }
                v
            }
            TaskKind::CommonWords { .. } => vec![Need::Words],
            TaskKind::Qa(QaDataset::Squad) => vec![Need::Squad],
            TaskKind::Qa(QaDataset::HotpotQa) => vec![Need::HotpotQa],
            TaskKind::VariableTracking { .. } | TaskKind::FreqWords { .. } => Vec::new(),
        }
    }
}

/// The task named `name`.
pub fn task(name: &str) -> Result<&'static Task> {
    TASKS.iter().find(|t| t.name == name).ok_or_else(|| Error::UnknownRulerTask {
        name: name.to_string(),
        known: TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
    })
}

/// The needle depths of a sweep with `n` steps: 0 to 100 % evenly (`n` = 1: 50 %).
pub fn depths(n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![50.0],
        _ => (0..n).map(|i| 100.0 * i as f64 / (n - 1) as f64).collect(),
    }
}

/// Python's `str.format` with named fields, in one pass (text substituted in is not scanned
/// again); a placeholder without a value is an error.
pub(crate) fn format(template: &str, fields: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + fields.iter().map(|f| f.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail.find('}').ok_or_else(|| Error::Template {
            dataset: "ruler".into(),
            message: format!("unclosed `{{` in `{template}`"),
        })?;
        let name = &tail[1..end];
        let value = fields.iter().find(|f| f.0 == name).ok_or_else(|| Error::Template {
            dataset: "ruler".into(),
            message: format!("no value for `{{{name}}}`"),
        })?;
        out.push_str(value.1);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_tasks_with_their_metrics_and_budgets() {
        assert_eq!(TASKS.len(), 13);
        assert_eq!(task("qa_2").unwrap().metric(), Match::Part);
        assert_eq!(task("cwe").unwrap().tokens_to_generate(), 120);
        let singles: Vec<_> = TASKS.iter().filter(|t| t.single_needle()).map(|t| t.name).collect();
        assert_eq!(singles, ["niah_single_1", "niah_single_2", "niah_single_3"]);
        let e = task("niah_single_4").unwrap_err().to_string();
        assert!(e.contains("unknown RULER task `niah_single_4`") && e.contains("niah_multiquery"), "{e}");
    }

    #[test]
    fn depths_are_even_steps() {
        assert_eq!(depths(5), [0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(depths(11)[3], 30.0);
        assert_eq!(depths(1), [50.0]);
    }

    #[test]
    fn format_is_one_pass() {
        let s = format("a {x} b {y}", &[("x", "{y}"), ("y", "2")]).unwrap();
        assert_eq!(s, "a {y} b 2");
        assert!(format("{z}", &[]).is_err());
    }
}
