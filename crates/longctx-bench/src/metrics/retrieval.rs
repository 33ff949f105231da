//! `retrieval_score`, `retrieval_zh_score` and `count_score` of LongBench's `metrics.py`:
//! the share of the numbers in the prediction that equal the expected one.

use super::pytext::{find_digit_runs, is_decimal};

/// Fraction of the `\d+` runs of `prediction` equal to `expected` (0 when there are none).
fn share_equal(prediction: &str, expected: &str) -> f64 {
    let numbers = find_digit_runs(prediction);
    if numbers.is_empty() {
        return 0.0;
    }
    let right = numbers.iter().filter(|n| **n == expected).count();
    right as f64 / numbers.len() as f64
}

/// `count_score` (passage_count): the ground truth is the number itself.
pub fn count(prediction: &str, ground_truth: &str) -> f64 {
    share_equal(prediction, ground_truth)
}

/// The first `<prefix>(\d+)` in `ground_truth`, as `re.findall(pattern, gt)[0]`.
pub(crate) fn paragraph_id<'a>(ground_truth: &'a str, prefix: &str) -> Option<&'a str> {
    let mut rest = ground_truth;
    while let Some(pos) = rest.find(prefix) {
        let after = &rest[pos + prefix.len()..];
        let digits = after.find(|c| !is_decimal(c)).unwrap_or(after.len());
        if digits > 0 {
            return Some(&after[..digits]);
        }
        rest = &rest[pos + prefix.len()..];
    }
    None
}

/// `retrieval_score` (`Paragraph N`) or `retrieval_zh_score` (`段落N`). `None` when the ground
/// truth has no paragraph id (the reference raises `IndexError`).
pub fn retrieval(prediction: &str, ground_truth: &str, prefix: &str) -> Option<f64> {
    paragraph_id(ground_truth, prefix).map(|id| share_equal(prediction, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_of_matching_numbers() {
        assert_eq!(count("There are 12 paragraphs, not 3", "12"), 0.5);
        assert_eq!(count("none", "3"), 0.0);
        assert_eq!(retrieval("Paragraph 3 and 30", "Paragraph 3", "Paragraph "), Some(0.5));
        assert_eq!(retrieval("段落27", "段落27", "段落"), Some(1.0));
        assert_eq!(retrieval("x", "no id", "Paragraph "), None);
        assert_eq!(paragraph_id("Paragraph x Paragraph 12", "Paragraph "), Some("12"));
    }
}
