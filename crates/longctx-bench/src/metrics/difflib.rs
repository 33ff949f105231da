//! `difflib.SequenceMatcher(None, a, b).ratio()` of CPython 3.11 (`Lib/difflib.py`), on
//! sequences of characters (Python `str` code points), with the default `autojunk=True`.
//!
//! Only the total size of the matching blocks matters for `ratio()`, but which blocks are
//! found depends on `find_longest_match`'s tie-breaking and on the "popular element" rule
//! (for `len(b) >= 200`, characters occurring more than `len(b) // 100 + 1` times in `b` are
//! not used to start a match), so both are ported step for step.

use std::collections::HashMap;

/// `SequenceMatcher` state for one pair (`a`, `b`) of character sequences.
struct SequenceMatcher<'a> {
    a: &'a [char],
    b: &'a [char],
    /// `b2j`: positions of each non-popular character of `b`, ascending.
    b2j: HashMap<char, Vec<usize>>,
    /// `j2len` / `newj2len` of `find_longest_match`, indexed by `j + 1`, all zero between calls.
    j2len: Vec<usize>,
    new_j2len: Vec<usize>,
    touched: Vec<usize>,
    new_touched: Vec<usize>,
}

impl<'a> SequenceMatcher<'a> {
    fn new(a: &'a [char], b: &'a [char]) -> Self {
        let mut b2j: HashMap<char, Vec<usize>> = HashMap::new();
        for (i, &c) in b.iter().enumerate() {
            b2j.entry(c).or_default().push(i);
        }
        if b.len() >= 200 {
            let ntest = b.len() / 100 + 1;
            b2j.retain(|_, idxs| idxs.len() <= ntest);
        }
        let n = b.len() + 1;
        Self { a, b, b2j, j2len: vec![0; n], new_j2len: vec![0; n], touched: Vec::new(), new_touched: Vec::new() }
    }

    /// `find_longest_match(alo, ahi, blo, bhi)` with no junk: `(i, j, size)`.
    fn find_longest_match(&mut self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        for i in alo..ahi {
            if let Some(idxs) = self.b2j.get(&a[i]) {
                for &j in idxs {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = self.j2len[j] + 1;
                    self.new_j2len[j + 1] = k;
                    self.new_touched.push(j + 1);
                    if k > bestsize {
                        (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                    }
                }
            }
            for t in self.touched.drain(..) {
                self.j2len[t] = 0;
            }
            std::mem::swap(&mut self.j2len, &mut self.new_j2len);
            std::mem::swap(&mut self.touched, &mut self.new_touched);
        }
        for t in self.touched.drain(..) {
            self.j2len[t] = 0;
        }
        // Extend over equal elements on both sides (popular elements included: they are not
        // junk). The two junk-extension loops of the reference never run without `isjunk`.
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            (besti, bestj, bestsize) = (besti - 1, bestj - 1, bestsize + 1);
        }
        while besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] == b[bestj + bestsize] {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    /// Sum of the sizes of `get_matching_blocks()`.
    fn matches(&mut self) -> usize {
        let mut queue = vec![(0, self.a.len(), 0, self.b.len())];
        let mut total = 0;
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.find_longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                total += k;
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        total
    }
}

/// `SequenceMatcher(None, a, b).ratio()`: `2.0 * matches / (len(a) + len(b))`, 1.0 for two
/// empty sequences.
pub(super) fn ratio(a: &[char], b: &[char]) -> f64 {
    let length = a.len() + b.len();
    if length == 0 {
        return 1.0;
    }
    let matches = SequenceMatcher::new(a, b).matches();
    2.0 * matches as f64 / length as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn docstring_examples() {
        // difflib's own examples: "abxcd" vs "abcd" has blocks of 2 + 2.
        assert_eq!(ratio(&chars("abxcd"), &chars("abcd")), 2.0 * 4.0 / 9.0);
        let mut m = SequenceMatcher::new(&[' ', 'a', 'b', 'c', 'd'], &['a', 'b', 'c', 'd', ' ', 'a', 'b', 'c', 'd']);
        assert_eq!(m.find_longest_match(0, 5, 0, 9), (0, 4, 5));
        assert_eq!(ratio(&[], &[]), 1.0);
    }

    #[test]
    fn popular_characters_do_not_start_matches() {
        // 300 'x' in b: 'x' is popular (300 > 4) and never starts a match, but the empty
        // match at (0, 0) is still extended forward over equal elements (CPython: 20/310).
        let b: Vec<char> = std::iter::repeat_n('x', 300).collect();
        let a: Vec<char> = std::iter::repeat_n('x', 10).collect();
        assert_eq!(ratio(&a, &b), 2.0 * 10.0 / 310.0);
        let shifted: Vec<char> = "y".chars().chain(a.iter().copied()).collect();
        assert_eq!(ratio(&shifted, &b), 0.0);
        let mut b2 = b.clone();
        b2.push('y');
        let mut a2 = a.clone();
        a2.push('y');
        assert_eq!(ratio(&a2, &b2), 2.0 * 11.0 / 312.0);
    }
}
