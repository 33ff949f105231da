//! LongBench's prompts: the official templates (`config/dataset2prompt.json`), generation
//! lengths (`config/dataset2maxlen.json`), model budgets (`config/model2maxlen.json`) and
//! `pred.py`'s middle truncation, which keeps the first and the last half of the budget of the
//! *whole* prompt in token space.
//!
//! The three JSON files are embedded byte for byte as THUDM/LongBench ships them (commit
//! 2e00731, MIT licence); a test checks them against the reference copy.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use longctx_core::{Sample, Tokenizer};

use crate::dataset::DatasetSpec;
use crate::error::{Error, Result};

const DATASET2PROMPT: &str = include_str!("../config/dataset2prompt.json");
const DATASET2MAXLEN: &str = include_str!("../config/dataset2maxlen.json");
const MODEL2MAXLEN: &str = include_str!("../config/model2maxlen.json");

fn parse_table<T: serde::de::DeserializeOwned>(json: &str) -> BTreeMap<String, T> {
    serde_json::from_str(json).expect("embedded LongBench config is valid JSON")
}

fn prompts() -> &'static BTreeMap<String, String> {
    static T: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    T.get_or_init(|| parse_table(DATASET2PROMPT))
}

fn max_gens() -> &'static BTreeMap<String, usize> {
    static T: OnceLock<BTreeMap<String, usize>> = OnceLock::new();
    T.get_or_init(|| parse_table(DATASET2MAXLEN))
}

/// The official prompt template of a dataset (`{context}` and `{input}` placeholders).
pub fn template(spec: &DatasetSpec) -> &'static str {
    prompts().get(spec.name).map(String::as_str).expect("every dataset of the table has a prompt")
}

/// The official maximum number of generated tokens of a dataset.
pub fn max_new_tokens(spec: &DatasetSpec) -> usize {
    *max_gens().get(spec.name).expect("every dataset of the table has a max length")
}

/// LongBench's prompt budget (`model2maxlen.json`) for the models it evaluated, e.g.
/// `llama2-7b-chat-4k` → 3500.
pub fn model_max_length(model: &str) -> Option<usize> {
    static T: OnceLock<BTreeMap<String, usize>> = OnceLock::new();
    T.get_or_init(|| parse_table(MODEL2MAXLEN)).get(model).copied()
}

/// Fills `{context}` and `{input}` of a template in one pass, as Python's
/// `template.format(**record)` does: text substituted in is never scanned again, `{{` and
/// `}}` stand for braces, and any other placeholder is an error.
pub fn fill(template: &str, sample: &Sample, dataset: &str) -> Result<String> {
    let err = |message: String| Error::Template { dataset: dataset.to_string(), message };
    let mut out = String::with_capacity(template.len() + sample.context.len() + sample.input.len());
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(err("single `}` in template".into()));
        } else {
            let end = tail.find('}').ok_or_else(|| err("unclosed `{` in template".into()))?;
            match &tail[1..end] {
                "context" => out.push_str(&sample.context),
                "input" => out.push_str(&sample.input),
                other => return Err(err(format!("unknown placeholder `{{{other}}}`"))),
            }
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A prompt after truncation to a token budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The prompt text the model receives (before any chat template).
    pub text: String,
    /// Tokens of the full prompt (with special tokens, as `pred.py` counts them).
    pub original_tokens: usize,
    /// Whether the middle was cut out.
    pub truncated: bool,
}

/// `pred.py`'s truncation: if the prompt has more than `max_length` tokens (counted with
/// special tokens), keep the text of the first `max_length / 2` and of the last
/// `max_length / 2` tokens, each decoded without special tokens, and concatenate them.
pub fn truncate_middle(prompt: &str, tokenizer: &dyn Tokenizer, max_length: usize) -> Result<Truncated> {
    let ids = tokenizer.encode(prompt, true)?;
    if ids.len() <= max_length {
        return Ok(Truncated { text: prompt.to_string(), original_tokens: ids.len(), truncated: false });
    }
    let half = max_length / 2;
    let mut text = tokenizer.decode(&ids[..half], true)?;
    text.push_str(&tokenizer.decode(&ids[ids.len() - half..], true)?);
    Ok(Truncated { text, original_tokens: ids.len(), truncated: true })
}

/// The prompt of one sample as LongBench's `pred.py` builds it, before the chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongBenchPrompt {
    /// Prompt text (template filled, middle-truncated to the budget).
    pub text: String,
    /// Token count of the untruncated prompt.
    pub original_tokens: usize,
    /// Whether the middle was cut out.
    pub truncated: bool,
    /// Wrap in the model's chat template (false for trec, triviaqa, samsum, lsht, lcc,
    /// repobench-p).
    pub use_chat_template: bool,
    /// Official generation length.
    pub max_new_tokens: usize,
    /// Stop strings besides the model's end-of-sequence token (`"\n"` for samsum).
    pub stop: Vec<String>,
}

/// Fills the dataset's template with the sample and truncates it to `max_length` tokens.
pub fn build(
    spec: &DatasetSpec,
    sample: &Sample,
    tokenizer: &dyn Tokenizer,
    max_length: usize,
) -> Result<LongBenchPrompt> {
    let filled = fill(template(spec), sample, spec.name)?;
    let t = truncate_middle(&filled, tokenizer, max_length)?;
    Ok(LongBenchPrompt {
        text: t.text,
        original_tokens: t.original_tokens,
        truncated: t.truncated,
        use_chat_template: !spec.skip_chat_template,
        max_new_tokens: max_new_tokens(spec),
        stop: if spec.stop_at_newline { vec!["\n".into()] } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{dataset, DATASETS};
    use longctx_core::TokenizeError;

    /// One token per character; id 0 is a BOS added with special tokens.
    struct CharTokenizer;
    impl Tokenizer for CharTokenizer {
        fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizeError> {
            let bos = add_special_tokens.then_some(0);
            Ok(bos.into_iter().chain(text.chars().map(u32::from)).collect())
        }
        fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizeError> {
            ids.iter()
                .filter(|&&i| !(skip_special_tokens && i == 0))
                .map(|&i| char::from_u32(i).ok_or_else(|| TokenizeError(format!("bad id {i}"))))
                .collect()
        }
    }

    fn sample(context: &str, input: &str) -> Sample {
        Sample::new("x", context, input)
    }

    #[test]
    fn every_dataset_has_a_prompt_and_a_length() {
        for d in DATASETS {
            let t = template(d);
            assert!(t.contains("{context}"), "{}", d.name);
            assert!(max_new_tokens(d) > 0);
        }
        assert_eq!(max_new_tokens(dataset("gov_report").unwrap()), 512);
        assert_eq!(model_max_length("llama2-7b-chat-4k"), Some(3500));
        assert_eq!(prompts().len(), 21);
    }

    #[test]
    fn fill_is_one_pass() {
        let s = sample("ctx with {input} inside", "Q");
        let text = fill("A {context} B {input} {{x}}", &s, "t").unwrap();
        assert_eq!(text, "A ctx with {input} inside B Q {x}");
        assert!(fill("{other}", &s, "t").is_err());
        assert!(fill("{context", &s, "t").is_err());
    }

    #[test]
    fn middle_truncation_keeps_both_halves() {
        let t = truncate_middle("abcdefghij", &CharTokenizer, 6).unwrap();
        // ids: BOS a..j (11 tokens); first 3 = BOS a b -> "ab"; last 3 = h i j.
        assert_eq!(t.text, "abhij");
        assert_eq!(t.original_tokens, 11);
        assert!(t.truncated);
        let fits = truncate_middle("abc", &CharTokenizer, 4).unwrap();
        assert_eq!((fits.text.as_str(), fits.truncated), ("abc", false));
    }

    #[test]
    fn samsum_stops_at_newline_and_skips_chat() {
        let d = dataset("samsum").unwrap();
        let p = build(d, &sample("dialogue", "Dialogue: x\nSummary:"), &CharTokenizer, 10_000).unwrap();
        assert_eq!(p.stop, ["\n"]);
        assert!(!p.use_chat_template);
        assert_eq!(p.max_new_tokens, 128);
        assert!(p.text.starts_with("Summarize the dialogue into a few short sentences."));
    }
}
