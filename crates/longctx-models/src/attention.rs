//! Inference-only attention kernels (no backward pass; the decoder keeps a differentiable
//! path in tensor operations for training): a fused causal softmax for prefill chunks and a
//! fused single-query attention for decoding.
#![allow(clippy::inline_always)]

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape};
use rayon::prelude::*;

/// Softmax over the last dimension of f32 scores `[.., rows, hi - lo]` whose rows are queries
/// at positions `first + (row mod len)` and whose columns are keys `lo..hi`: a key is visible
/// when it is not after the query and, with a window, less than `window` positions before it;
/// invisible keys get probability 0. One pass per row, no mask tensor (inference only).
pub(crate) struct CausalSoftmax {
    pub(crate) first: usize,
    pub(crate) len: usize,
    pub(crate) lo: usize,
    pub(crate) window: Option<usize>,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("causal-softmax takes f32 scores");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal-softmax takes contiguous scores");
        };
        let n = layout.shape().dims().last().copied().unwrap_or(1);
        let mut out = data[start..end].to_vec();
        out.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            let qp = self.first + r % self.len;
            let hi = (qp + 1 - self.lo).min(n);
            let lo = self.window.map_or(0, |w| (qp + 1).saturating_sub(w).saturating_sub(self.lo)).min(hi);
            let visible = &mut row[lo..hi];
            let max = visible.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in visible.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in visible.iter_mut() {
                *v /= sum;
            }
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Attention of one new token per sequence over the cached keys and values, all in f32:
/// `q` `[b, kvh, rep, d]` (the `rep` query heads sharing each key/value head), `k` and `v`
/// `[b, kvh, n, d]` (views of the cache: any strides with unit stride on `d`). Each key and
/// value row is read once for all the query heads of its group.
pub(crate) struct DecodeAttention {
    pub(crate) scale: f32,
}

/// `Σ a·b` with eight partial sums (vectorised by the compiler).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn f32_data<'a>(s: &'a CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(d) => Ok(d),
        _ => candle_core::bail!("decode attention: {what} must be f32"),
    }
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (f32_data(qs, "q")?, f32_data(ks, "k")?, f32_data(vs, "v")?);
        let [b, kvh, rep, d] = *ql.shape().dims() else { candle_core::bail!("decode attention: q is not 4-d") };
        let [_, _, n, _] = *kl.shape().dims() else { candle_core::bail!("decode attention: k is not 4-d") };
        let Some((q0, _)) = ql.contiguous_offsets() else { candle_core::bail!("decode attention: q not contiguous") };
        let (ks_, vs_) = (kl.stride(), vl.stride());
        // With one cached row (a one-token prompt) the row stride is never used.
        if ks_[3] != 1 || vs_[3] != 1 || (n > 1 && (ks_[2] != d || vs_[2] != d)) {
            candle_core::bail!("decode attention: cache rows must be contiguous");
        }
        let mut out = vec![0f32; b * kvh * rep * d];
        #[cfg(target_arch = "x86_64")]
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        out.par_chunks_mut(rep * d).enumerate().for_each(|(g, out_g)| {
            let (bi, h) = (g / kvh, g % kvh);
            let kbase = kl.start_offset() + bi * ks_[0] + h * ks_[1];
            let vbase = vl.start_offset() + bi * vs_[0] + h * vs_[1];
            let group = Group {
                q: &q[q0 + g * rep * d..q0 + (g + 1) * rep * d],
                k: &k[kbase..kbase + n * d],
                v: &v[vbase..vbase + n * d],
                rep,
                d,
                scale: self.scale,
            };
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { group.attend_avx2(out_g) };
                return;
            }
            let _ = avx2;
            group.attend(out_g);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, kvh, rep, d))))
    }
}

/// One key/value head's share of [`DecodeAttention`].
struct Group<'a> {
    /// `rep` query rows of `d`.
    q: &'a [f32],
    /// `n` key rows of `d`.
    k: &'a [f32],
    /// `n` value rows of `d`.
    v: &'a [f32],
    rep: usize,
    d: usize,
    scale: f32,
}

impl Group<'_> {
    /// [`Group::attend`] with AVX2 + FMA kernels: scores for eight keys at a time (one
    /// horizontal reduction per eight keys), and the weighted sum of values kept in registers
    /// for head sizes 64 and 128.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn attend_avx2(&self, out: &mut [f32]) {
        use std::arch::x86_64::{
            _mm256_add_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_permute2f128_ps,
            _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        };
        let (rep, d) = (self.rep, self.d);
        if d % 8 != 0 {
            return self.attend(out);
        }
        let n = self.k.len() / d;
        let mut scores = vec![0f32; rep * n];
        let kp = self.k.as_ptr();
        let blocks = n / 8;
        let scale = _mm256_set1_ps(self.scale);
        for jb in 0..blocks {
            for r in 0..rep {
                let qp = self.q.as_ptr().add(r * d);
                let mut acc = [_mm256_setzero_ps(); 8];
                for t in (0..d).step_by(8) {
                    let qv = _mm256_loadu_ps(qp.add(t));
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(kp.add((jb * 8 + u) * d + t)), qv, *a);
                    }
                }
                let s01 = _mm256_hadd_ps(acc[0], acc[1]);
                let s23 = _mm256_hadd_ps(acc[2], acc[3]);
                let s45 = _mm256_hadd_ps(acc[4], acc[5]);
                let s67 = _mm256_hadd_ps(acc[6], acc[7]);
                let s0123 = _mm256_hadd_ps(s01, s23);
                let s4567 = _mm256_hadd_ps(s45, s67);
                let sums = _mm256_add_ps(
                    _mm256_permute2f128_ps(s0123, s4567, 0x20),
                    _mm256_permute2f128_ps(s0123, s4567, 0x31),
                );
                _mm256_storeu_ps(scores.as_mut_ptr().add(r * n + jb * 8), _mm256_mul_ps(sums, scale));
            }
        }
        for j in blocks * 8..n {
            let kj = &self.k[j * d..(j + 1) * d];
            for r in 0..rep {
                scores[r * n + j] = dot(&self.q[r * d..(r + 1) * d], kj) * self.scale;
            }
        }
        softmax_rows(&mut scores, n);
        let vp = self.v.as_ptr();
        for r in 0..rep {
            let p = &scores[r * n..(r + 1) * n];
            let o = out.as_mut_ptr().add(r * d);
            match d {
                64 => weighted_sum::<8>(p, vp, o),
                128 => weighted_sum::<16>(p, vp, o),
                _ => {
                    for (j, vj) in self.v.chunks_exact(d).enumerate() {
                        let pj = _mm256_set1_ps(p[j]);
                        for t in (0..d).step_by(8) {
                            let cur = _mm256_loadu_ps(o.add(t));
                            _mm256_storeu_ps(o.add(t), _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj.as_ptr().add(t)), cur));
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn attend(&self, out: &mut [f32]) {
        let (rep, d) = (self.rep, self.d);
        let n = self.k.len() / d;
        let mut scores = vec![0f32; rep * n];
        for (j, kj) in self.k.chunks_exact(d).enumerate() {
            for r in 0..rep {
                scores[r * n + j] = dot(&self.q[r * d..(r + 1) * d], kj) * self.scale;
            }
        }
        softmax_rows(&mut scores, n);
        for (j, vj) in self.v.chunks_exact(d).enumerate() {
            for r in 0..rep {
                let p = scores[r * n + j];
                for (o, x) in out[r * d..(r + 1) * d].iter_mut().zip(vj) {
                    *o += p * x;
                }
            }
        }
    }
}

/// Softmax of each row of `n` scores, in place.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], n: usize) {
    for row in scores.chunks_exact_mut(n) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        for x in row.iter_mut() {
            *x /= sum;
        }
    }
}

/// `out[..8·V] = Σ_j p[j] · v_j` with the `V` output vectors held in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn weighted_sum<const V: usize>(p: &[f32], v: *const f32, out: *mut f32) {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let mut acc = [_mm256_setzero_ps(); V];
    for (j, &pj) in p.iter().enumerate() {
        let pv = _mm256_set1_ps(pj);
        let row = v.add(j * V * 8);
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(t * 8)), *a);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(t * 8), *a);
    }
}
