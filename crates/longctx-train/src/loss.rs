//! The training losses as per-sequence token weights over one optimizer step. A step's loss
//! is `Σ w_i · Σ_j ℓ_ij` over its sequences `i` and their target tokens `j` (`ℓ` the
//! token's negative log-likelihood), so it is the same however the step's sequences are split
//! into micro-batches or packs: each micro-batch adds its part, and gradients add up.
//!
//! - `token-mean` (transformers, TRL, torchtune): `w_i = 1 / Σ_k N_k`, the mean over every
//!   target token of the step — long sequences weigh more.
//! - `longalign` (LongAlign, eq. 4): `w_i = 1 / (M · N_i)`, the mean over the step's `M`
//!   sequences of each sequence's mean token loss — every sequence weighs the same.

use serde::{Deserialize, Serialize};

/// Which loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossKind {
    /// Mean over the step's target tokens.
    #[serde(rename = "token-mean")]
    TokenMean,
    /// Mean over the step's sequences of their mean token loss.
    #[default]
    #[serde(rename = "longalign")]
    LongAlign,
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "token-mean" => Ok(Self::TokenMean),
            "longalign" => Ok(Self::LongAlign),
            other => Err(format!("unknown loss `{other}` (token-mean or longalign)")),
        }
    }
}

impl LossKind {
    /// The token weight of each sequence of a step whose sequences have `n_targets` target
    /// tokens each.
    pub fn weights(self, n_targets: &[usize]) -> Vec<f64> {
        let m = n_targets.len() as f64;
        let total: usize = n_targets.iter().sum();
        n_targets
            .iter()
            .map(|&n| match self {
                LossKind::TokenMean => 1.0 / total.max(1) as f64,
                LossKind::LongAlign => 1.0 / (m * n.max(1) as f64),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_over_the_target_tokens() {
        let n = [3, 10, 1];
        for kind in [LossKind::TokenMean, LossKind::LongAlign] {
            let w = kind.weights(&n);
            let total: f64 = w.iter().zip(&n).map(|(w, &n)| w * n as f64).sum();
            assert!((total - 1.0).abs() < 1e-12, "{kind:?}");
        }
        assert_eq!(LossKind::LongAlign.weights(&n)[1], 1.0 / 30.0);
        assert_eq!(LossKind::TokenMean.weights(&n)[1], 1.0 / 14.0);
    }
}
