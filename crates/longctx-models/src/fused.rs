//! Fused element-wise operations of the decoder with hand-written backward passes, used
//! while training on the CPU in f32: RMSNorm, SwiGLU (`silu(gate) · up`) and the rotary
//! embedding. Each replaces a chain of candle operations — each of which allocates its output
//! and, in the backward pass, a zeroed gradient buffer per input — by one pass each way.
//! Inference keeps the composed operations (whose numbers the parity fixtures pin).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::dense::f32_slice;

/// Whether the fused training kernels apply to `inputs`: f32 on the CPU, some input being
/// differentiated.
pub(crate) fn applies(inputs: &[&Tensor]) -> bool {
    inputs.iter().all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
        && inputs.iter().any(|t| t.track_op() || t.is_variable())
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

/// `x · rsqrt(mean(x²) + eps) · w` over the last dimension.
struct RmsNorm {
    eps: f32,
}

/// `rsqrt(mean(x²) + eps)` of a row.
#[inline]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1, self.name())?, f32_slice(s2, l2, self.name())?);
        let h = w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h).zip(x.par_chunks(h)).for_each(|(o, row)| {
            let r = inv_rms(row, self.eps);
            for ((o, &v), &wv) in o.iter_mut().zip(row).zip(w) {
                *o = v * r * wv;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (xv, wv, gv) = (values(x)?, values(w)?, values(grad)?);
        let h = wv.len();
        let rows = xv.len() / h;
        let mut dx = vec![0f32; xv.len()];
        // Per row: dx = r · (g·w − x̂ · mean(g·w·x̂)), and the row's share of dw = Σ g · x̂.
        let dw_parts: Vec<Vec<f32>> = dx
            .par_chunks_mut(h)
            .enumerate()
            .fold(
                || vec![0f32; h],
                |mut dw, (i, d)| {
                    let (row, g) = (&xv[i * h..(i + 1) * h], &gv[i * h..(i + 1) * h]);
                    let r = inv_rms(row, self.eps);
                    let mut dot = 0f32;
                    for j in 0..h {
                        dot += g[j] * wv[j] * row[j] * r;
                    }
                    let mean = dot / h as f32;
                    for j in 0..h {
                        let xhat = row[j] * r;
                        d[j] = r * (g[j] * wv[j] - xhat * mean);
                        dw[j] += g[j] * xhat;
                    }
                    dw
                },
            )
            .collect();
        let mut dw = vec![0f32; h];
        for part in dw_parts {
            for (a, b) in dw.iter_mut().zip(part) {
                *a += b;
            }
        }
        let _ = rows;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, w.shape(), w.device())?)))
    }
}

/// RMSNorm of `x` `[.., h]` with weight `w` `[h]` (f32, differentiable, fused).
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

/// `silu(gate) · up`.
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, u) = (f32_slice(s1, l1, self.name())?, f32_slice(s2, l2, self.name())?);
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(4096).zip(g.par_chunks(4096).zip(u.par_chunks(4096))).for_each(|(o, (g, u))| {
            for ((o, &a), &b) in o.iter_mut().zip(g).zip(u) {
                *o = a / (1.0 + (-a).exp()) * b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gv, uv, dv) = (values(gate)?, values(up)?, values(grad)?);
        let mut dgate = vec![0f32; gv.len()];
        let mut dup = vec![0f32; gv.len()];
        dgate.par_chunks_mut(4096).zip(dup.par_chunks_mut(4096)).enumerate().for_each(|(c, (dg, du))| {
            let base = c * 4096;
            for j in 0..dg.len() {
                let (a, b, d) = (gv[base + j], uv[base + j], dv[base + j]);
                let s = 1.0 / (1.0 + (-a).exp());
                du[j] = d * a * s;
                dg[j] = d * b * s * (1.0 + a * (1.0 - s));
            }
        });
        Ok((
            Some(Tensor::from_vec(dgate, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(dup, up.shape(), up.device())?),
        ))
    }
}

/// `silu(gate) · up` (f32, differentiable, fused).
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// `x · cos + rotate_half(x) · sin` for `x` `[b, h, s, d]` and `cos`, `sin` `[s, d]`.
struct Rope;

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, cos, sin) =
            (f32_slice(s1, l1, self.name())?, f32_slice(s2, l2, self.name())?, f32_slice(s3, l3, self.name())?);
        let d = l1.shape().dims()[3];
        let s = l1.shape().dims()[2];
        let half = d / 2;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d).zip(x.par_chunks(d)).enumerate().for_each(|(row, (o, xr))| {
            let p = row % s;
            let (c, sn) = (&cos[p * d..(p + 1) * d], &sin[p * d..(p + 1) * d]);
            for j in 0..half {
                o[j] = xr[j] * c[j] - xr[j + half] * sn[j];
                o[j + half] = xr[j + half] * c[j + half] + xr[j] * sn[j + half];
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gv, cv, sv) = (values(grad)?, values(cos)?, values(sin)?);
        let d = x.dim(D::Minus1)?;
        let s = x.dim(2)?;
        let half = d / 2;
        let mut dx = vec![0f32; gv.len()];
        // The transpose of the forward map: dx₁ = g₁·c₁ + g₂·s₂, dx₂ = g₂·c₂ − g₁·s₁.
        dx.par_chunks_mut(d).enumerate().for_each(|(row, o)| {
            let p = row % s;
            let g = &gv[row * d..(row + 1) * d];
            let (c, sn) = (&cv[p * d..(p + 1) * d], &sv[p * d..(p + 1) * d]);
            for j in 0..half {
                o[j] = g[j] * c[j] + g[j + half] * sn[j + half];
                o[j + half] = g[j + half] * c[j + half] - g[j] * sn[j];
            }
        });
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), None, None))
    }
}

/// The rotary embedding of `x` `[b, h, s, d]` with `cos`, `sin` `[s, d]` (f32,
/// differentiable in `x`, fused).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64).map(|i| (((i * 2_654_435_761 + seed * 7919) % 2000) as f32 / 1000.0) - 1.0).collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// The fused op and the composed one agree in value and in every input's gradient.
    fn check(inputs: &[Var], fused: impl Fn(&[Tensor]) -> Tensor, composed: impl Fn(&[Tensor]) -> Tensor) {
        let ts: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&ts), composed(&ts));
        assert!(max_diff(&a, &b) < 1e-5, "values differ by {}", max_diff(&a, &b));
        let w = Tensor::from_vec(data(a.elem_count(), 99), a.shape(), a.device()).unwrap();
        let ga = (a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, v) in inputs.iter().enumerate() {
            if let (Some(x), Some(y)) = (ga.get(v.as_tensor()), gb.get(v.as_tensor())) {
                assert!(max_diff(x, y) < 1e-4, "gradient {i} differs by {}", max_diff(x, y));
            }
        }
    }

    #[test]
    fn fused_ops_equal_the_composed_ones_and_their_gradients() {
        let dev = Device::Cpu;
        let var = |shape: &[usize], seed| {
            Var::from_tensor(&Tensor::from_vec(data(shape.iter().product(), seed), shape, &dev).unwrap()).unwrap()
        };
        let (x, w) = (var(&[1, 7, 16], 1), var(&[16], 2));
        check(
            &[x, w],
            |t| rms_norm(&t[0], &t[1], 1e-5).unwrap(),
            |t| {
                let variance = t[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let normed = t[0].broadcast_div(&(variance + 1e-5).unwrap().sqrt().unwrap()).unwrap();
                normed.broadcast_mul(&t[1]).unwrap()
            },
        );
        check(
            &[var(&[2, 5, 12], 3), var(&[2, 5, 12], 4)],
            |t| swiglu(&t[0], &t[1]).unwrap(),
            |t| {
                let g = &t[0];
                (g * (g.neg().unwrap().exp().unwrap() + 1.0).unwrap().recip().unwrap()).unwrap().mul(&t[1]).unwrap()
            },
        );
        let (cos, sin) = (
            Tensor::from_vec(data(5 * 8, 5), (5, 8), &dev).unwrap(),
            Tensor::from_vec(data(5 * 8, 6), (5, 8), &dev).unwrap(),
        );
        let (c2, s2) = (cos.clone(), sin.clone());
        check(
            &[var(&[1, 3, 5, 8], 7)],
            move |t| rope(&t[0], &cos, &sin).unwrap(),
            move |t| {
                let x = &t[0];
                let x1 = x.narrow(D::Minus1, 0, 4).unwrap();
                let x2 = x.narrow(D::Minus1, 4, 4).unwrap();
                let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
                (x.broadcast_mul(&c2).unwrap() + rotated.broadcast_mul(&s2).unwrap()).unwrap()
            },
        );
    }
}
