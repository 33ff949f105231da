//! Token-level F1 for question answering: `qa_f1_score` and `qa_f1_zh_score` of LongBench's
//! `LongBench/metrics.py` (THUDM/LongBench @ 2e00731), themselves after the SQuAD scorer.

use std::collections::HashMap;
use std::hash::Hash;

use super::{jieba, pytext};

/// `normalize_answer`: lower-case, drop ASCII punctuation, replace the articles `a`, `an`,
/// `the` (as whole words, `re.sub(r"\b(a|an|the)\b", " ", …)`) with a space, and collapse
/// whitespace.
pub(crate) fn normalize_answer(s: &str) -> String {
    let lowered = pytext::lower(s);
    let no_punc: String = lowered.chars().filter(|c| !pytext::ASCII_PUNCTUATION.contains(*c)).collect();
    let no_articles = remove_articles(&no_punc);
    pytext::split_whitespace(&no_articles).collect::<Vec<_>>().join(" ")
}

/// `re.sub(r"\b(a|an|the)\b", " ", text)` with Python's Unicode word boundaries. The
/// alternation is tried in order at each position, as the regex engine does.
fn remove_articles(text: &str) -> String {
    /// The alternatives of the pattern, in the order the regex tries them (ASCII, one byte per char).
    const ARTICLES: [&str; 3] = ["a", "an", "the"];
    let chars: Vec<char> = text.chars().collect();
    let word_at = |i: usize| i < chars.len() && pytext::is_word(chars[i]);
    let boundary = |i: usize| (i > 0 && word_at(i - 1)) != word_at(i);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_with = |w: &str| chars[i..].iter().copied().take(w.len()).eq(w.chars());
        let matched =
            if boundary(i) { ARTICLES.iter().find(|w| starts_with(w) && boundary(i + w.len())) } else { None };
        if let Some(w) = matched {
            out.push(' ');
            i += w.len();
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `normalize_zh_answer`: lower-case, drop ASCII and Chinese punctuation, drop all whitespace.
pub(crate) fn normalize_zh_answer(s: &str) -> String {
    const CN_PUNCTUATION: &str = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.";
    pytext::lower(s)
        .chars()
        .filter(|&c| !pytext::ASCII_PUNCTUATION.contains(c) && !CN_PUNCTUATION.contains(c))
        .filter(|&c| !pytext::is_space(c))
        .collect()
}

/// `f1_score`: F1 of the multiset overlap of two token lists (`Counter(p) & Counter(g)`).
pub(crate) fn f1_tokens<T: Eq + Hash>(prediction: &[T], ground_truth: &[T]) -> f64 {
    let mut counts: HashMap<&T, usize> = HashMap::with_capacity(ground_truth.len());
    for t in ground_truth {
        *counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0usize;
    for t in prediction {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / prediction.len() as f64;
    let recall = 1.0 * num_same as f64 / ground_truth.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `qa_f1_score` (English): F1 over whitespace tokens of the normalised strings.
pub fn qa_f1(prediction: &str, ground_truth: &str) -> f64 {
    let p = normalize_answer(prediction);
    let g = normalize_answer(ground_truth);
    let pt: Vec<&str> = pytext::split_whitespace(&p).collect();
    let gt: Vec<&str> = pytext::split_whitespace(&g).collect();
    f1_tokens(&pt, &gt)
}

/// Tokens for `qa_f1_zh_score`: jieba words, each normalised, empty ones dropped.
fn zh_tokens(s: &str) -> Vec<String> {
    jieba::cut(s).into_iter().map(normalize_zh_answer).filter(|t| !t.is_empty()).collect()
}

/// `qa_f1_zh_score` (Chinese): F1 over normalised jieba tokens.
pub fn qa_f1_zh(prediction: &str, ground_truth: &str) -> f64 {
    f1_tokens(&zh_tokens(prediction), &zh_tokens(ground_truth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_are_whole_words_only() {
        assert_eq!(normalize_answer("The cat and an apple, a theme."), "cat and apple theme");
        assert_eq!(normalize_answer("Anthem THE"), "anthem");
        // "a.n" loses its dot and becomes the article "an".
        assert_eq!(normalize_answer("a.n x"), "x");
    }

    #[test]
    fn f1_counts_multiset_overlap() {
        assert_eq!(qa_f1("the cat sat", "a cat"), 2.0 * 0.5 * 1.0 / 1.5);
        assert_eq!(qa_f1("", "x"), 0.0);
        assert_eq!(qa_f1("a a a", "the"), 0.0);
        let p = ["x", "x", "y"];
        assert_eq!(f1_tokens(&p, &["x"]), 2.0 * (1.0 / 3.0) / (1.0 / 3.0 + 1.0));
    }

    #[test]
    fn zh_normalisation() {
        assert_eq!(normalize_zh_answer("你好，World! "), "你好world");
    }
}
