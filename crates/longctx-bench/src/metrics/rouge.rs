//! ROUGE-L F as LongBench's `rouge_score` / `rouge_zh_score` compute it, through the `rouge`
//! package 1.0.1 (`rouge/rouge.py`, `rouge/rouge_score.py`):
//! `Rouge().get_scores([pred], [gt], avg=True)["rouge-l"]["f"]`, with every exception turned
//! into 0.0 by LongBench.
//!
//! What the package does, and this port reproduces:
//! * each text is split into "sentences" on `.` (pieces of length 0 dropped), and each
//!   sentence's whitespace collapsed to single spaces; an empty list of sentences raises
//!   (→ 0.0);
//! * words are the sentences split on `" "` (an all-blank sentence gives the word `""`);
//! * it is the *summary-level* ROUGE-L with `exclusive=True`: `m`/`n` are the numbers of
//!   *distinct* reference/hypothesis words, and the overlap is the number of distinct words on
//!   the LCS paths reconstructed by `_recon_lcs` for every (reference sentence, hypothesis
//!   sentence) pair, following that function's tie-breaking exactly;
//! * `_recon_lcs` recurses once per step of its path. Python raises `RecursionError` when the
//!   call stack passes `sys.getrecursionlimit()` (1000), which LongBench turns into a score of
//!   0.0. The port computes the path length and returns 0.0 exactly when the reference would
//!   have overflowed, given the frames already on the stack when LongBench's `eval.py` calls
//!   the metric ([`RECURSION_HEADROOM_EN`], [`RECURSION_HEADROOM_ZH`]).

use std::collections::HashMap;

use super::{jieba, pytext};

/// Python's default recursion limit (`sys.getrecursionlimit()`).
pub const PYTHON_RECURSION_LIMIT: usize = 1000;

/// Frames on the stack below the first `_recon` frame when eval.py (run as `__main__`) scores
/// an English ROUGE dataset: `<module>`, `scorer`, `rouge_score`, `Rouge.get_scores`,
/// `_get_avg_scores`, the metric lambda, `rouge_l_summary_level`, `_union_lcs`, `_recon_lcs`.
pub const RECURSION_HEADROOM_EN: usize = 9;
/// As [`RECURSION_HEADROOM_EN`] plus the `rouge_zh_score` frame.
pub const RECURSION_HEADROOM_ZH: usize = 10;

/// Why the reference would fail on an input (LongBench scores these 0.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RougeFailure {
    /// The prediction or the reference has no sentence (`ValueError` in the package).
    Empty,
    /// `_recon_lcs` would exceed Python's recursion limit.
    Recursion,
}

/// `rouge_score(prediction, ground_truth)` of LongBench (English), with `eval.py`'s stack depth.
pub fn rouge(prediction: &str, ground_truth: &str) -> f64 {
    rouge_l_f(prediction, ground_truth, RECURSION_HEADROOM_EN).unwrap_or(0.0)
}

/// `rouge_zh_score`: both texts are segmented with jieba and joined with spaces first.
pub fn rouge_zh(prediction: &str, ground_truth: &str) -> f64 {
    let p = jieba::cut(prediction).join(" ");
    let g = jieba::cut(ground_truth).join(" ");
    rouge_l_f(&p, &g, RECURSION_HEADROOM_ZH).unwrap_or(0.0)
}

/// `" ".join(s.split())` for every non-empty piece of `text.split(".")`.
fn sentences(text: &str) -> Vec<String> {
    text.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| pytext::split_whitespace(s).collect::<Vec<_>>().join(" "))
        .collect()
}

/// ROUGE-L summary-level F (`exclusive=True`) of the `rouge` package, or why it would fail.
/// `headroom` is the number of Python frames below the first `_recon` call.
pub fn rouge_l_f(hypothesis: &str, reference: &str, headroom: usize) -> Result<f64, RougeFailure> {
    let hyp = sentences(hypothesis);
    let refs = sentences(reference);
    if hyp.is_empty() || refs.is_empty() {
        return Err(RougeFailure::Empty);
    }
    // Words become small integers, so the LCS tables compare numbers, not strings; the
    // distinct-word counts and the union of LCS words are then counts of distinct ids.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let ref_words = intern(&mut ids, &refs);
    let hyp_words = intern(&mut ids, &hyp);
    let n_ids = ids.len();
    let distinct = |ws: &[Vec<u32>]| {
        let mut seen = vec![false; n_ids];
        ws.iter().flatten().filter(|&&w| !std::mem::replace(&mut seen[w as usize], true)).count()
    };
    let m = distinct(&ref_words);
    let n = distinct(&hyp_words);
    let max_frames = PYTHON_RECURSION_LIMIT.saturating_sub(headroom);
    let mut union = vec![false; n_ids];
    let mut table = Vec::new();
    for r in &ref_words {
        for h in &hyp_words {
            recon_lcs_words(r, h, max_frames, &mut table, &mut union)?;
        }
    }
    let llcs = union.iter().filter(|&&u| u).count() as f64;
    let r_lcs = llcs / m as f64;
    let p_lcs = llcs / n as f64;
    Ok(2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8)))
}

/// Replaces each word of each sentence by its id in `ids` (new words get the next id).
fn intern<'a>(ids: &mut HashMap<&'a str, u32>, sentences: &'a [String]) -> Vec<Vec<u32>> {
    sentences
        .iter()
        .map(|s| {
            s.split(' ')
                .map(|w| {
                    let next = ids.len() as u32;
                    *ids.entry(w).or_insert(next)
                })
                .collect()
        })
        .collect()
}

/// Marks the words on `_recon_lcs(x, y)`'s path in `union`, or fails if the recursion would
/// have needed more than `max_frames` frames. `table` is scratch space.
fn recon_lcs_words(
    x: &[u32],
    y: &[u32],
    max_frames: usize,
    table: &mut Vec<u16>,
    union: &mut [bool],
) -> Result<(), RougeFailure> {
    let (n, m) = (x.len(), y.len());
    // Every step lowers i or j by at most one and the recursion stops when either reaches 0,
    // so the path has at least min(n, m) steps plus the final call.
    if n.min(m) + 1 > max_frames {
        return Err(RougeFailure::Recursion);
    }
    // LCS table; entries are at most min(n, m) < max_frames, so u16 is enough.
    let width = m + 1;
    table.clear();
    table.resize((n + 1) * width, 0);
    for i in 1..=n {
        let (prev, cur) = table[(i - 1) * width..(i + 1) * width].split_at_mut(width);
        let xi = x[i - 1];
        for j in 1..=m {
            cur[j] = if xi == y[j - 1] { prev[j - 1] + 1 } else { prev[j].max(cur[j - 1]) };
        }
    }
    // Walk `_recon`'s path first, counting frames, and only then record the words: a
    // RecursionError anywhere discards the whole score.
    let (mut i, mut j) = (n, m);
    let mut frames = 1;
    let mut words = Vec::new();
    while i > 0 && j > 0 {
        if x[i - 1] == y[j - 1] {
            words.push(x[i - 1]);
            i -= 1;
            j -= 1;
        } else if table[(i - 1) * width + j] > table[i * width + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
        frames += 1;
        if frames > max_frames {
            return Err(RougeFailure::Recursion);
        }
    }
    for w in words {
        union[w as usize] = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_almost_one() {
        let f = rouge("the cat sat. on the mat", "the cat sat. on the mat");
        assert!((f - 2.0 * (1.0 / (2.0 + 1e-8))).abs() < 1e-15);
    }

    #[test]
    fn empty_or_dot_only_texts_score_zero() {
        assert_eq!(rouge_l_f("...", "a b", 9), Err(RougeFailure::Empty));
        assert_eq!(rouge("", "a b"), 0.0);
        // A blank sentence still yields the word "".
        assert!(rouge_l_f("  ", "a b", 9).is_ok());
    }

    #[test]
    fn overlap_counts_distinct_words() {
        // ref words {a, b}, hyp words {a, b}; LCS path words {a, b} -> p = r = 1.
        let f = rouge_l_f("a a b", "a b b", 9).unwrap();
        assert!((f - 2.0 * (1.0 / (2.0 + 1e-8))).abs() < 1e-15);
    }

    #[test]
    fn recursion_limit_gives_zero() {
        let long: String = vec!["w"; 2000].join(" ");
        assert_eq!(rouge_l_f(&long, &long, 9), Err(RougeFailure::Recursion));
        let short: String = vec!["w"; 500].join(" ");
        assert!(rouge_l_f(&short, &short, 9).is_ok());
    }
}
