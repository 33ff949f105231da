//! `Levenshtein.ratio(s1, s2)` of python-Levenshtein 0.27 (rapidfuzz 3): the normalised Indel
//! similarity `1 - (len1 + len2 - 2·LCS) / (len1 + len2)`, computed in that order of floating
//! point operations, with the LCS length from a bit-parallel algorithm (Hyyrö 2004).

use std::collections::HashMap;

/// Length of the longest common subsequence of two character sequences.
pub(super) fn lcs_len(a: &[char], b: &[char]) -> usize {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let words = a.len().div_ceil(64);
    let mut peq: HashMap<char, Vec<u64>> = HashMap::new();
    for (i, &c) in a.iter().enumerate() {
        peq.entry(c).or_insert_with(|| vec![0; words])[i / 64] |= 1 << (i % 64);
    }
    let mut v = vec![u64::MAX; words];
    for c in b {
        let Some(m) = peq.get(c) else { continue };
        let mut carry = false;
        for (vw, &mw) in v.iter_mut().zip(m) {
            let u = *vw & mw;
            let (s1, c1) = vw.overflowing_add(u);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            carry = c1 || c2;
            *vw = s2 | (*vw - u);
        }
    }
    let ones: usize = v
        .iter()
        .enumerate()
        .map(|(w, &x)| {
            let bits = (a.len() - w * 64).min(64);
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            (x & mask).count_ones() as usize
        })
        .sum();
    a.len() - ones
}

/// `Levenshtein.ratio(a, b)`; 1.0 for two empty sequences.
pub(super) fn ratio(a: &[char], b: &[char]) -> f64 {
    let lensum = a.len() + b.len();
    if lensum == 0 {
        return 1.0;
    }
    let dist = lensum - 2 * lcs_len(a, b);
    1.0 - dist as f64 / lensum as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_lcs(a: &[char], b: &[char]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                t[i][j] = if a[i - 1] == b[j - 1] { t[i - 1][j - 1] + 1 } else { t[i - 1][j].max(t[i][j - 1]) };
            }
        }
        t[a.len()][b.len()]
    }

    #[test]
    fn bit_parallel_lcs_matches_dynamic_programming() {
        // Deterministic pseudo-random strings over a small alphabet, across word boundaries.
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        for len_a in [1, 5, 63, 64, 65, 130, 200] {
            for len_b in [0, 1, 7, 64, 150] {
                let a: Vec<char> = (0..len_a).map(|_| (b'a' + (next() % 4) as u8) as char).collect();
                let b: Vec<char> = (0..len_b).map(|_| (b'a' + (next() % 4) as u8) as char).collect();
                assert_eq!(lcs_len(&a, &b), naive_lcs(&a, &b), "{len_a}x{len_b}");
            }
        }
    }

    #[test]
    fn ratio_is_normalised_indel_similarity() {
        let a: Vec<char> = "kitten".chars().collect();
        let b: Vec<char> = "sitting".chars().collect();
        assert_eq!(ratio(&a, &b), 1.0 - 5.0 / 13.0);
    }
}
