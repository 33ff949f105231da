//! AdamW, learning-rate schedules and global-norm clipping, computed as torch 2.5's
//! `torch.optim.AdamW` (single-tensor path), `torch.nn.utils.clip_grad_norm_` and
//! transformers 4.46's `get_{constant,linear,cosine}_schedule_with_warmup` compute them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::step::Grads;
use crate::Result;

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW over named variables, with its moments (which checkpoints save).
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub steps: usize,
}

impl AdamW {
    /// A fresh optimizer (zero moments) over `params`.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().to_dtype(DType::F32)?.zeros_like();
        let m = params.iter().map(|(_, p)| zeros(p)).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.iter().map(|(_, p)| zeros(p)).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { config, params, m, v, steps: 0 })
    }

    /// The variables, by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One step at learning rate `lr` with `grads` (a variable without gradient is left
    /// alone, as torch skips a parameter whose `.grad` is None).
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        self.steps += 1;
        let (b1, b2) = self.config.betas;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let bias1 = 1.0 - b1.powi(t);
        let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = lr / bias1;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            let g = g.to_dtype(DType::F32)?;
            let theta = p.as_tensor().to_dtype(DType::F32)?;
            let theta = (theta * (1.0 - lr * self.config.weight_decay))?;
            // exp_avg.lerp_(grad, 1 - β₁); exp_avg_sq.mul_(β₂).addcmul_(grad, grad, 1 - β₂)
            self.m[i] = (&self.m[i] + ((&g - &self.m[i])? * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((self.v[i].sqrt()? / bias2_sqrt)? + self.config.eps)?;
            let theta = (theta - ((&self.m[i] / denom)? * step_size)?)?;
            p.set(&theta.to_dtype(p.dtype())?)?;
        }
        Ok(())
    }

    /// Saves the moments and the step count (safetensors: `m.<name>`, `v.<name>`, `steps`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            tensors.insert(format!("m.{name}"), self.m[i].clone());
            tensors.insert(format!("v.{name}"), self.v[i].clone());
        }
        let device = self.m.first().map_or(candle_core::Device::Cpu, |t| t.device().clone());
        tensors.insert("steps".into(), Tensor::new(&[self.steps as u32], &device)?);
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }

    /// Restores what [`AdamW::save`] wrote (the same variables, by name).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.m.first().map_or(candle_core::Device::Cpu, |t| t.device().clone());
        let mut tensors = candle_core::safetensors::load(path, &device)?;
        let mut take = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = tensors.remove(&key).ok_or_else(|| {
                crate::Error::Config(format!("{}: no `{key}` (a checkpoint of another run?)", path.display()))
            })?;
            if t.dims() != like.dims() {
                return Err(crate::Error::Config(format!(
                    "{}: `{key}` has shape {:?}, expected {:?}",
                    path.display(),
                    t.dims(),
                    like.dims()
                )));
            }
            Ok(t)
        };
        for i in 0..self.params.len() {
            let name = self.params[i].0.clone();
            self.m[i] = take(format!("m.{name}"), &self.m[i].clone())?;
            self.v[i] = take(format!("v.{name}"), &self.v[i].clone())?;
        }
        let steps =
            tensors.remove("steps").ok_or_else(|| crate::Error::Config(format!("{}: no `steps`", path.display())))?;
        self.steps = steps.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

/// Clips the gradients of `vars` to a global L2 norm of `max_norm` as
/// `torch.nn.utils.clip_grad_norm_` does (every gradient scaled by
/// `min(1, max_norm / (norm + 1e-6))`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Grads, vars: &[&Var], max_norm: Option<f64>) -> Result<f64> {
    let mut norms = Vec::new();
    for v in vars {
        if let Some(g) = grads.get(v) {
            norms.push(g.to_dtype(DType::F32)?.sqr()?.sum_all()?.sqrt()?);
        }
    }
    if norms.is_empty() {
        return Ok(0.0);
    }
    // torch: the norm of the stacked per-tensor norms, in f32.
    let total = Tensor::stack(&norms, 0)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    if let Some(max_norm) = max_norm {
        let coef = (max_norm as f32 / (total + 1e-6)).min(1.0);
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = (g * f64::from(coef))?;
                grads.set(v, scaled);
            }
        }
    }
    Ok(f64::from(total))
}

/// How the learning rate moves after the warm-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from the peak to 0 (the default).
    #[default]
    Cosine,
    /// A straight line from the peak to 0.
    Linear,
    /// The peak throughout.
    Constant,
}

impl Schedule {
    /// The learning rate of 0-based step `step` of `total`, with a linear warm-up over
    /// `warmup` steps to `peak` (transformers' schedules with warm-up).
    pub fn lr(self, peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
        if step < warmup {
            return peak * step as f64 / warmup.max(1) as f64;
        }
        let factor = match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => {
                (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
            }
            Schedule::Cosine => {
                let progress = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        };
        peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_with_warmup_follows_transformers() {
        // get_cosine_schedule_with_warmup(num_warmup_steps=3, num_training_steps=10), lr 1e-3.
        let lrs: Vec<f64> = (0..10).map(|s| Schedule::Cosine.lr(1e-3, s, 3, 10)).collect();
        assert_eq!(lrs[0], 0.0);
        assert!((lrs[1] - 1e-3 / 3.0).abs() < 1e-18);
        assert_eq!(lrs[3], 1e-3);
        assert!((lrs[9] - 4.951_556_604_879_043e-5).abs() < 1e-12, "{}", lrs[9]);
        assert!((Schedule::Linear.lr(1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(1.0, 6, 2, 10), 1.0);
    }
}
