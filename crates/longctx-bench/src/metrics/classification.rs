//! `classification_score` of LongBench's `metrics.py` (trec, lsht), with its matching quirk.

/// Class names found in the prediction, after LongBench's pruning, and the resulting score.
///
/// The reference collects every class name that is a substring of the prediction, then walks
/// that list and removes each name that is a substring of (but not equal to) the ground truth —
/// while iterating over the same list, so the element after each removed one is skipped and
/// survives even if it should have been removed. `list.remove` deletes the *first* equal
/// element. The score is `1 / len(list)` when the ground truth is in the list, else 0.
pub fn classification(prediction: &str, ground_truth: &str, all_classes: &[String]) -> f64 {
    let mut matches: Vec<&str> = all_classes.iter().map(String::as_str).filter(|c| prediction.contains(c)).collect();
    // Python's list iterator: an index that advances after each step, over a list that shrinks.
    let mut idx = 0;
    while idx < matches.len() {
        let term = matches[idx];
        if ground_truth.contains(term) && term != ground_truth {
            let first = matches.iter().position(|m| *m == term).expect("term is in the list");
            matches.remove(first);
        }
        idx += 1;
    }
    if matches.contains(&ground_truth) {
        1.0 / matches.len() as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn several_classes_share_the_credit() {
        let c = classes(&["Date", "Other location", "City"]);
        assert_eq!(classification("Date or City", "City", &c), 0.5);
        assert_eq!(classification("nothing", "City", &c), 0.0);
    }

    #[test]
    fn removal_while_iterating_skips_the_next_element() {
        // Both "Other" and "Other loc" are substrings of the truth; removing "Other" makes the
        // iteration skip "Other loc", which stays and halves the score.
        let c = classes(&["Other", "Other loc", "Other location"]);
        assert_eq!(classification("Other location", "Other location", &c), 0.5);
        // Without the quirk only the first would be pruned: a single match scores 1.
        let c = classes(&["Other", "Other location"]);
        assert_eq!(classification("Other location", "Other location", &c), 1.0);
    }
}
