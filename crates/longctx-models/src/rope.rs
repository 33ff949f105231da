//! Rotary position embeddings and their scaling variants, computed as transformers does in
//! `modeling_rope_utils.py` (`_compute_default_rope_parameters`, `_compute_linear_scaling_…`,
//! `_compute_dynamic_ntk_parameters`, `_compute_yarn_parameters`, `_compute_llama3_parameters`;
//! transformers 4.46.3) and `LlamaRotaryEmbedding` (the dynamic recomputation and the
//! attention scaling of cos/sin).
//!
//! transformers computes the frequencies in float32 with torch; this module computes them in
//! f64 and rounds once to f32, which stays within a few ulp of torch (checked against the
//! oracle fixtures in `tests/rope_parity.rs`).

use std::f64::consts::PI;

/// A RoPE scaling variant (`rope_scaling` of a Hugging Face config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// No scaling (`rope_type: "default"` or no `rope_scaling`).
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f64,
    },
    /// Dynamic NTK: the base grows with the sequence length once it exceeds
    /// `max_position_embeddings`.
    DynamicNtk {
        /// Scale factor.
        factor: f64,
    },
    /// YaRN: per-frequency blend of interpolation and extrapolation, plus an attention factor.
    Yarn {
        /// Scale factor.
        factor: f64,
        /// Scale applied to cos/sin; `0.1 ln(factor) + 1` when absent.
        attention_factor: Option<f64>,
        /// Fast boundary in rotations (default 32).
        beta_fast: f64,
        /// Slow boundary in rotations (default 1).
        beta_slow: f64,
    },
    /// Llama 3.1's scaling: low frequencies divided by `factor`, high ones kept, a smooth
    /// blend between.
    Llama3 {
        /// Scale factor (8 for Llama 3.1).
        factor: f64,
        /// Low-frequency factor (1).
        low_freq_factor: f64,
        /// High-frequency factor (4).
        high_freq_factor: f64,
        /// Context length of pre-training (8192).
        original_max_position_embeddings: f64,
    },
}

/// Everything the frequencies depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// Dimension of one attention head.
    pub head_dim: usize,
    /// Share of the head dimension that is rotated (1.0 for Llama-family models).
    pub partial_rotary_factor: f64,
    /// `rope_theta`, the base.
    pub theta: f64,
    /// `max_position_embeddings` of the config.
    pub max_position_embeddings: usize,
    /// The scaling variant.
    pub scaling: RopeScaling,
}

/// `1 / base^(2i/dim)` for `i` in `0..dim/2`, in f64.
fn default_inv_freq(base: f64, dim: usize) -> Vec<f64> {
    (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f64 / dim as f64)).collect()
}

impl RopeParams {
    /// The rotated dimension: `int(head_dim * partial_rotary_factor)`.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor) as usize
    }

    /// The inverse frequencies and the attention factor (which multiplies cos and sin), as
    /// `rope_init_fn(config, device, seq_len=seq_len)` returns them. `seq_len` only matters
    /// for dynamic NTK, where `None` (or a length within `max_position_embeddings`) gives the
    /// frequencies at initialisation.
    pub fn inv_freq(&self, seq_len: Option<usize>) -> (Vec<f32>, f32) {
        let dim = self.rotary_dim();
        let (freqs, attention_factor) = match self.scaling {
            RopeScaling::None => (default_inv_freq(self.theta, dim), 1.0),
            RopeScaling::Linear { factor } => {
                (default_inv_freq(self.theta, dim).into_iter().map(|f| f / factor).collect(), 1.0)
            }
            RopeScaling::DynamicNtk { factor } => {
                let max = self.max_position_embeddings as f64;
                let seq = seq_len.filter(|&s| s > self.max_position_embeddings).map_or(max, |s| s as f64);
                let d = dim as f64;
                let base = self.theta * ((factor * seq / max) - (factor - 1.0)).powf(d / (d - 2.0));
                (default_inv_freq(base, dim), 1.0)
            }
            RopeScaling::Yarn { factor, attention_factor, beta_fast, beta_slow } => {
                let attention = attention_factor.unwrap_or_else(|| 0.1 * factor.ln() + 1.0);
                let (d, max) = (dim as f64, self.max_position_embeddings as f64);
                let correction_dim =
                    |rotations: f64| (d * (max / (rotations * 2.0 * PI)).ln()) / (2.0 * self.theta.ln());
                let low = correction_dim(beta_fast).floor().max(0.0);
                let high = correction_dim(beta_slow).ceil().min(d - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                let freqs = (0..dim / 2)
                    .map(|i| {
                        let pos_freq = self.theta.powf((2 * i) as f64 / d);
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation_factor = 1.0 - ramp;
                        let interpolation = 1.0 / (factor * pos_freq);
                        let extrapolation = 1.0 / pos_freq;
                        interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
                    })
                    .collect();
                (freqs, attention)
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = original_max_position_embeddings;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                let freqs = default_inv_freq(self.theta, dim)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (freqs, 1.0)
            }
        };
        (freqs.into_iter().map(|f| f as f32).collect(), attention_factor as f32)
    }
}

/// The frequencies in use while a model runs: transformers' `LlamaRotaryEmbedding` state.
///
/// For dynamic NTK, a forward pass whose largest position `p` has `p + 1 >
/// max_seq_len_cached` recomputes the frequencies for `seq_len = p + 1` (keys already in the
/// KV cache keep the rotation they were given); a pass entirely below the original length
/// after growth resets them. Other variants never change.
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryState {
    params: RopeParams,
    inv_freq: Vec<f32>,
    attention_factor: f32,
    original_inv_freq: Vec<f32>,
    max_seq_len_cached: usize,
}

impl RotaryState {
    /// The state after model initialisation.
    pub fn new(params: RopeParams) -> Self {
        let (inv_freq, attention_factor) = params.inv_freq(None);
        Self {
            params,
            original_inv_freq: inv_freq.clone(),
            inv_freq,
            attention_factor,
            max_seq_len_cached: params.max_position_embeddings,
        }
    }

    /// `_dynamic_frequency_update` for a forward pass whose largest position is `max_position`.
    pub fn update(&mut self, max_position: usize) {
        if !matches!(self.params.scaling, RopeScaling::DynamicNtk { .. }) {
            return;
        }
        let seq_len = max_position + 1;
        let original = self.params.max_position_embeddings;
        if seq_len > self.max_seq_len_cached {
            let (inv_freq, attention_factor) = self.params.inv_freq(Some(seq_len));
            self.inv_freq = inv_freq;
            self.attention_factor = attention_factor;
            self.max_seq_len_cached = seq_len;
        }
        if seq_len < original && self.max_seq_len_cached > original {
            self.inv_freq.clone_from(&self.original_inv_freq);
            self.max_seq_len_cached = original;
        }
    }

    /// The current inverse frequencies.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// The current attention factor (scales cos and sin).
    pub fn attention_factor(&self) -> f32 {
        self.attention_factor
    }

    /// cos and sin for one position, each `rotary_dim` long (the half-dimension frequencies
    /// repeated twice, as `torch.cat((freqs, freqs), dim=-1)`), times the attention factor.
    /// The angle is computed as transformers does: `position * inv_freq` in f32.
    pub fn cos_sin(&self, position: usize) -> (Vec<f32>, Vec<f32>) {
        let angles: Vec<f32> = self.inv_freq.iter().map(|f| f * position as f32).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() * self.attention_factor).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() * self.attention_factor).collect();
        ([cos.as_slice(), cos.as_slice()].concat(), [sin.as_slice(), sin.as_slice()].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(scaling: RopeScaling) -> RopeParams {
        RopeParams { head_dim: 8, partial_rotary_factor: 1.0, theta: 10_000.0, max_position_embeddings: 64, scaling }
    }

    #[test]
    fn default_and_linear() {
        let (f, a) = params(RopeScaling::None).inv_freq(None);
        assert_eq!(f, [1.0, 0.1, 0.01, 0.001]);
        assert_eq!(a, 1.0);
        let (f, _) = params(RopeScaling::Linear { factor: 4.0 }).inv_freq(None);
        assert_eq!(f, [0.25, 0.025, 0.0025, 0.00025]);
    }

    #[test]
    fn dynamic_ntk_grows_then_resets() {
        let mut s = RotaryState::new(params(RopeScaling::DynamicNtk { factor: 2.0 }));
        let init = s.inv_freq().to_vec();
        assert_eq!(init, params(RopeScaling::None).inv_freq(None).0);
        s.update(63);
        assert_eq!(s.inv_freq(), init.as_slice());
        s.update(127);
        assert!(s.inv_freq()[1] < init[1]);
        let grown = s.inv_freq().to_vec();
        s.update(100); // still within what was cached: unchanged
        assert_eq!(s.inv_freq(), grown.as_slice());
        s.update(10); // below the original length: reset
        assert_eq!(s.inv_freq(), init.as_slice());
    }

    #[test]
    fn yarn_attention_factor() {
        let (_, a) = params(RopeScaling::Yarn { factor: 4.0, attention_factor: None, beta_fast: 32.0, beta_slow: 1.0 })
            .inv_freq(None);
        assert!((f64::from(a) - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-7);
    }
}
