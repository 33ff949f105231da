//! `code_sim_score` of LongBench's `metrics.py` (lcc, repobench-p): the first line of the
//! prediction that holds no `` ` ``, `#` or `//`, compared with `fuzzywuzzy.fuzz.ratio`
//! (fuzzywuzzy 0.18.0) and divided by 100.
//!
//! fuzzywuzzy computes the ratio with python-Levenshtein when that package is importable and
//! with `difflib.SequenceMatcher` otherwise; the two differ, so the backend is a parameter.

use super::{difflib, levenshtein};

/// Which `SequenceMatcher` fuzzywuzzy uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FuzzBackend {
    /// `difflib.SequenceMatcher` — fuzzywuzzy's fallback and LongBench's requirements.
    #[default]
    Difflib,
    /// python-Levenshtein's `ratio` (installed alongside fuzzywuzzy in many environments).
    Levenshtein,
}

/// `fuzz.ratio(s1, s2)`: 100 if equal, 0 if either is empty, else
/// `int(round(100 * SequenceMatcher(None, s1, s2).ratio()))` (round half to even).
pub fn fuzz_ratio(s1: &str, s2: &str, backend: FuzzBackend) -> u32 {
    if s1 == s2 {
        return 100;
    }
    if s1.is_empty() || s2.is_empty() {
        return 0;
    }
    let a: Vec<char> = s1.chars().collect();
    let b: Vec<char> = s2.chars().collect();
    let r = match backend {
        FuzzBackend::Difflib => difflib::ratio(&a, &b),
        FuzzBackend::Levenshtein => levenshtein::ratio(&a, &b),
    };
    (100.0 * r).round_ties_even() as u32
}

/// `code_sim_score(prediction, ground_truth)`.
pub fn code_sim(prediction: &str, ground_truth: &str, backend: FuzzBackend) -> f64 {
    let line = prediction
        .trim_start_matches('\n')
        .split('\n')
        .find(|l| !l.contains('`') && !l.contains('#') && !l.contains("//"))
        .unwrap_or("");
    f64::from(fuzz_ratio(line, ground_truth, backend)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comment_and_fence_lines() {
        let pred = "\n```python\n# comment\nx = 1\n";
        assert_eq!(code_sim(pred, "x = 1", FuzzBackend::Difflib), 1.0);
        assert_eq!(code_sim("# only comments", "x = 1", FuzzBackend::Difflib), 0.0);
        assert_eq!(code_sim("", "", FuzzBackend::Levenshtein), 1.0);
    }

    #[test]
    fn rounds_half_to_even() {
        // 2 * 1 / 8 = 0.25 → 25; "ab" vs "axxxxx" → 2*1/8 = 25 exactly.
        assert_eq!(fuzz_ratio("ab", "axxxxx", FuzzBackend::Difflib), 25);
        // 2*1/16 = 12.5 → 12 (half to even).
        assert_eq!(fuzz_ratio("a", "abcdefghijklmno", FuzzBackend::Difflib), 12);
    }
}
