//! How far two judges agree on the same items: rank correlations as scipy computes them,
//! quadratic-weighted Cohen's κ as scikit-learn does, and two plain distances.
//!
//! - [`spearman`]: `scipy.stats.spearmanr(a, b).statistic` — Pearson's r of the average ranks
//!   (ties share their mean rank); NaN when a column is constant.
//! - [`kendall_tau_b`]: `scipy.stats.kendalltau(a, b).statistic` (τ-b: `(C − D) / √((n₀ − n₁)
//!   (n₀ − n₂))`, `n₁`/`n₂` the pairs tied in `a`/`b`); NaN when a column is constant.
//! - [`quadratic_kappa`]: `sklearn.metrics.cohen_kappa_score(a, b, labels=…,
//!   weights="quadratic")` — `1 − Σ w·O / Σ w·E` with `O` the confusion matrix over `labels`,
//!   `E` the outer product of its marginals over its total, and `w = (i − j)²` over label
//!   *positions*: with scikit-learn's default labels (the sorted values present) a gap between
//!   two present ratings counts as one step whatever its size; pass the scale (1..=10) to
//!   weigh by rating distance. NaN where scikit-learn divides 0 by 0.
//! - [`mean_abs_diff`], [`share_within`]: mean |a − b|, and the share of items with
//!   |a − b| ≤ 1.

/// Average ranks (1-based), ties sharing the mean of their positions (`scipy.stats.rankdata`).
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson's r (NaN when a column is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman's ρ (see the module documentation).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "two columns of the same items");
    if a.len() < 2 {
        return f64::NAN;
    }
    pearson(&average_ranks(a), &average_ranks(b))
}

/// Kendall's τ-b (see the module documentation).
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "two columns of the same items");
    let n = a.len();
    if n < 2 {
        return f64::NAN;
    }
    let (mut concordant, mut discordant, mut tied_a, mut tied_b) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            if da == 0.0 {
                tied_a += 1;
            }
            if db == 0.0 {
                tied_b += 1;
            }
            if da != 0.0 && db != 0.0 {
                if (da > 0.0) == (db > 0.0) {
                    concordant += 1;
                } else {
                    discordant += 1;
                }
            }
        }
    }
    let total = (n * (n - 1) / 2) as u64;
    if tied_a == total || tied_b == total {
        return f64::NAN;
    }
    let tau =
        (concordant as f64 - discordant as f64) / ((total - tied_a) as f64).sqrt() / ((total - tied_b) as f64).sqrt();
    tau.clamp(-1.0, 1.0)
}

/// Quadratic-weighted Cohen's κ over `labels` (`None`: the sorted distinct values of both
/// columns, scikit-learn's default). A value outside `labels` is left out of the confusion
/// matrix, as scikit-learn does.
pub fn quadratic_kappa(a: &[i64], b: &[i64], labels: Option<&[i64]>) -> f64 {
    assert_eq!(a.len(), b.len(), "two columns of the same items");
    let labels: Vec<i64> = if let Some(l) = labels {
        l.to_vec()
    } else {
        let mut l: Vec<i64> = a.iter().chain(b).copied().collect();
        l.sort_unstable();
        l.dedup();
        l
    };
    let k = labels.len();
    let index = |v: i64| labels.iter().position(|&l| l == v);
    let mut observed = vec![vec![0.0f64; k]; k];
    for (&x, &y) in a.iter().zip(b) {
        if let (Some(i), Some(j)) = (index(x), index(y)) {
            observed[i][j] += 1.0;
        }
    }
    let total: f64 = observed.iter().flatten().sum();
    let rows: Vec<f64> = observed.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| observed.iter().map(|r| r[j]).sum()).collect();
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64) - (j as f64)).powi(2);
            num += w * observed[i][j];
            den += w * rows[i] * cols[j] / total;
        }
    }
    1.0 - num / den
}

/// Mean |a − b|.
pub fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Share of items with |a − b| ≤ `within`.
pub fn share_within(a: &[f64], b: &[f64], within: f64) -> f64 {
    a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= within).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn perfect_and_opposite_orders() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [4.0, 3.0, 2.0, 1.0];
        assert!((spearman(&a, &a) - 1.0).abs() < 1e-15);
        assert_eq!(kendall_tau_b(&a, &b), -1.0);
        assert!(spearman(&a, &[5.0; 4]).is_nan());
        assert_eq!(quadratic_kappa(&[1, 2, 3], &[1, 2, 3], None), 1.0);
        assert_eq!(mean_abs_diff(&a, &b), 2.0);
        assert_eq!(share_within(&a, &b, 1.0), 0.5);
    }
}
