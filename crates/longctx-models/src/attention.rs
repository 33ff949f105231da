//! Inference-only attention kernels (no backward pass; the decoder keeps a differentiable
//! path in tensor operations for training): a fused causal softmax for prefill chunks and a
//! fused single-query attention for decoding.
#![allow(clippy::inline_always)]

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::dense::{f32_slice, product, View};

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

/// Attention of one new token per sequence over the cached keys and values: `q` f32
/// `[b, kvh, rep, d]` (the `rep` query heads sharing each key/value head), `k` and `v`
/// `[b, kvh, n, d]` in f32 or f16 (views of the cache: any strides with unit stride on `d`;
/// f16 rows are widened to f32 as they are read, scores and sums stay f32). Each key and
/// value row is read once for all the query heads of its group.
pub(crate) struct DecodeAttention {
    pub(crate) scale: f32,
}

/// `Σ a·b` with eight partial sums (vectorised by the compiler).
#[inline(always)]
fn dot<T: CacheElem>(a: &[f32], b: &[T]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y.f32()).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l].f32();
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// An element of the KV cache as the decoding kernel reads it.
pub(crate) trait CacheElem: Copy + Send + Sync {
    fn f32(self) -> f32;
    /// Eight consecutive elements at `p`, widened to f32.
    ///
    /// # Safety
    /// `p..p + 8` must be readable, and the CPU must have AVX (and F16C for f16).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl CacheElem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl CacheElem for half::f16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_cvtph_ps(std::arch::x86_64::_mm_loadu_si128(p.cast()))
    }
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
        let q = f32_data(qs, "q")?;
        match (ks, vs) {
            (CpuStorage::F32(k), CpuStorage::F32(v)) => self.run(q, ql, k, kl, v, vl),
            (CpuStorage::F16(k), CpuStorage::F16(v)) => self.run(q, ql, k, kl, v, vl),
            _ => candle_core::bail!("decode attention: keys and values must both be f32 or both f16"),
        }
    }
}

impl DecodeAttention {
    fn run<T: CacheElem>(
        &self,
        q: &[f32],
        ql: &Layout,
        k: &[T],
        kl: &Layout,
        v: &[T],
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
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
        let avx2 =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
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
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
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
struct Group<'a, T> {
    /// `rep` query rows of `d`.
    q: &'a [f32],
    /// `n` key rows of `d`.
    k: &'a [T],
    /// `n` value rows of `d`.
    v: &'a [T],
    rep: usize,
    d: usize,
    scale: f32,
}

impl<T: CacheElem> Group<'_, T> {
    /// [`Group::attend`] with AVX2 + FMA kernels: scores for eight keys at a time (one
    /// horizontal reduction per eight keys), and the weighted sum of values kept in registers
    /// for head sizes 64 and 128.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
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
                        *a = _mm256_fmadd_ps(T::load8(kp.add((jb * 8 + u) * d + t)), qv, *a);
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
                64 => weighted_sum::<T, 8>(p, vp, o),
                128 => weighted_sum::<T, 16>(p, vp, o),
                _ => {
                    for (j, &pj) in p.iter().enumerate() {
                        let pj = _mm256_set1_ps(pj);
                        for t in (0..d).step_by(8) {
                            let cur = _mm256_loadu_ps(o.add(t));
                            _mm256_storeu_ps(o.add(t), _mm256_fmadd_ps(pj, T::load8(vp.add(j * d + t)), cur));
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
                    *o += p * x.f32();
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
unsafe fn weighted_sum<T: CacheElem, const V: usize>(p: &[f32], v: *const T, out: *mut f32) {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let mut acc = [_mm256_setzero_ps(); V];
    for (j, &pj) in p.iter().enumerate() {
        let pv = _mm256_set1_ps(pj);
        let row = v.add(j * V * 8);
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(pv, T::load8(row.add(t * 8)), *a);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(t * 8), *a);
    }
}

/// Causal attention with a backward pass, for training: `q` `[b, h, n, d]` over `k`, `v`
/// `[b, kvh, n, d]` (queries and keys at the same positions `0..n`, `h` a multiple of `kvh`),
/// all f32 and contiguous; a key is visible to a query at or after it, within `window`
/// positions when there is one. Memory is `O(n · d)`: no `n × n` matrix is kept. The forward
/// pass stores each row's log-sum-exp; the backward pass recomputes the probabilities from it
/// (FlashAttention's scheme: `dV += Pᵀ dO`, `dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O))`, `dQ = dS K`,
/// `dK = dSᵀ Q`, each scaled as the scores are).
pub(crate) struct CausalAttention {
    pub(crate) scale: f32,
    pub(crate) window: Option<usize>,
    /// Log-sum-exp of each query row's scores, `[b, h, n]`, from the forward pass.
    lse: std::sync::Mutex<Vec<f32>>,
}

impl CausalAttention {
    pub(crate) fn new(scale: f32, window: Option<usize>) -> Self {
        Self { scale, window, lse: std::sync::Mutex::new(Vec::new()) }
    }

    /// The first key row `i` sees.
    fn first_key(&self, i: usize) -> usize {
        self.window.map_or(0, |w| (i + 1).saturating_sub(w))
    }
}

/// Query rows per block: a block's scores `[BLOCK, keys]` are one product.
const BLOCK: usize = 64;

/// The operands of one (batch, key/value head) group: `q`, `o`, `dout` `[rep, n, d]`, `k`, `v`
/// `[n, d]`, `lse` `[rep, n]`.
struct GroupInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
}

impl CausalAttention {
    /// Scores `scale · q_b · k[lo..hi]ᵀ` of a query block, masked rows turned into
    /// probabilities: with `lse` given, `exp(s − lse)` (the backward pass); otherwise each row's
    /// softmax, its log-sum-exp written to `lse_out`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn probabilities(
        &self,
        p: &mut [f32],
        q_block: &[f32],
        k: &[f32],
        (i0, lo, hi): (usize, usize, usize),
        d: usize,
        lse: Option<&[f32]>,
        lse_out: &mut [f32],
    ) {
        let (bq, keys) = (q_block.len() / d, hi - lo);
        product(
            p,
            (bq, keys, d),
            View::rows(q_block, d),
            View::transposed(&k[lo * d..hi * d], d),
            self.scale,
            false,
            false,
        );
        for r in 0..bq {
            let i = i0 + r;
            let row = &mut p[r * keys..(r + 1) * keys];
            let (first, last) = (self.first_key(i) - lo, i - lo);
            row[..first].fill(0.0);
            row[last + 1..].fill(0.0);
            let visible = &mut row[first..=last];
            if let Some(lse) = lse {
                let l = lse[r];
                for s in visible.iter_mut() {
                    *s = crate::encoder::exp_f32(*s - l);
                }
            } else {
                let max = lane_max(visible);
                let sum = exp_shifted_sum(visible, max);
                let inv = 1.0 / sum;
                for s in visible.iter_mut() {
                    *s *= inv;
                }
                lse_out[r] = max + sum.ln();
            }
        }
    }
}

/// The largest value (eight lanes, so that the loop vectorizes; the scores hold no NaN).
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let mut max = tail.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for l in lanes {
        max = if l > max { l } else { max };
    }
    max
}

/// `xs[j] = exp(xs[j] − shift)` for every `j`, returning their sum (eight partial sums).
#[inline(always)]
fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        for l in 0..8 {
            c[l] = crate::encoder::exp_f32(c[l] - shift);
            lanes[l] += c[l];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v = crate::encoder::exp_f32(*v - shift);
        sum += *v;
    }
    sum
}

/// One (batch, query head) of the forward pass: `out` `[n, d]` and `lse` `[n]`, a block of
/// query rows at a time.
#[inline(always)]
fn forward_head(op: &CausalAttention, q: &[f32], k: &[f32], v: &[f32], d: usize, out: &mut [f32], lse: &mut [f32]) {
    let n = lse.len();
    let mut p = vec![0f32; BLOCK * n];
    for i0 in (0..n).step_by(BLOCK) {
        let hi = (i0 + BLOCK).min(n);
        let (bq, lo) = (hi - i0, op.first_key(i0));
        let keys = hi - lo;
        op.probabilities(&mut p, &q[i0 * d..hi * d], k, (i0, lo, hi), d, None, &mut lse[i0..hi]);
        product(
            &mut out[i0 * d..hi * d],
            (bq, d, keys),
            View::rows(&p, keys),
            View::rows(&v[lo * d..hi * d], d),
            1.0,
            false,
            false,
        );
    }
}

/// The backward pass of one (batch, key/value head) group: the gradients of its `rep` query
/// heads (`dq` `[rep, n, d]`) and of its keys and values (`dk`, `dv` `[n, d]`).
#[inline(always)]
fn backward_group(op: &CausalAttention, x: &GroupInputs<'_>, d: usize, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let n = x.k.len() / d;
    let rep = x.q.len() / (n * d);
    let mut p = vec![0f32; BLOCK * n];
    let mut ds = vec![0f32; BLOCK * n];
    let mut unused = [0f32; BLOCK];
    for r in 0..rep {
        let range = r * n * d..(r + 1) * n * d;
        let (q, o, dout) = (&x.q[range.clone()], &x.o[range.clone()], &x.dout[range]);
        let lse = &x.lse[r * n..(r + 1) * n];
        let dq = &mut dq[r * n * d..(r + 1) * n * d];
        for i0 in (0..n).step_by(BLOCK) {
            let hi = (i0 + BLOCK).min(n);
            let (bq, lo) = (hi - i0, op.first_key(i0));
            let keys = hi - lo;
            let (q_b, o_b, do_b) = (&q[i0 * d..hi * d], &o[i0 * d..hi * d], &dout[i0 * d..hi * d]);
            op.probabilities(&mut p, q_b, x.k, (i0, lo, hi), d, Some(&lse[i0..hi]), &mut unused);
            // dP = dO · Vᵀ, then dS = P ∘ (dP − rowsum(dO ∘ O)) · scale.
            product(
                &mut ds,
                (bq, keys, d),
                View::rows(do_b, d),
                View::transposed(&x.v[lo * d..hi * d], d),
                1.0,
                false,
                false,
            );
            for row in 0..bq {
                let delta = dot(&do_b[row * d..(row + 1) * d], &o_b[row * d..(row + 1) * d]);
                let (pr, dr) = (&p[row * keys..(row + 1) * keys], &mut ds[row * keys..(row + 1) * keys]);
                for (g, &pv) in dr.iter_mut().zip(pr) {
                    *g = pv * (*g - delta) * op.scale;
                }
            }
            product(
                &mut dq[i0 * d..hi * d],
                (bq, d, keys),
                View::rows(&ds, keys),
                View::rows(&x.k[lo * d..hi * d], d),
                1.0,
                false,
                false,
            );
            product(
                &mut dk[lo * d..hi * d],
                (keys, d, bq),
                View::transposed(&ds, keys),
                View::rows(q_b, d),
                1.0,
                true,
                false,
            );
            product(
                &mut dv[lo * d..hi * d],
                (keys, d, bq),
                View::transposed(&p, keys),
                View::rows(do_b, d),
                1.0,
                true,
                false,
            );
        }
    }
}

/// The kernels compiled for AVX2 + FMA where the CPU has them (the row loops: masks,
/// exponentials, `dS`).
mod simd {
    use super::{backward_group, forward_head, CausalAttention, GroupInputs};

    #[target_feature(enable = "avx2,fma")]
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn forward_head_avx2(
        op: &CausalAttention,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        d: usize,
        out: &mut [f32],
        lse: &mut [f32],
    ) {
        forward_head(op, q, k, v, d, out, lse);
    }

    #[target_feature(enable = "avx2,fma")]
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn backward_group_avx2(
        op: &CausalAttention,
        inputs: &GroupInputs<'_>,
        d: usize,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        backward_group(op, inputs, d, dq, dk, dv);
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
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
        let (q, k, v) = (
            f32_slice(qs, ql, "causal attention q")?,
            f32_slice(ks, kl, "causal attention k")?,
            f32_slice(vs, vl, "causal attention v")?,
        );
        let [b, h, n, d] = *ql.shape().dims() else { candle_core::bail!("causal attention: q is not 4-d") };
        let [_, kvh, _, _] = *kl.shape().dims() else { candle_core::bail!("causal attention: k is not 4-d") };
        let rep = h / kvh;
        let mut out = vec![0f32; b * h * n * d];
        let mut lse = vec![0f32; b * h * n];
        let avx2 = has_avx2();
        out.par_chunks_mut(n * d).zip(lse.par_chunks_mut(n)).enumerate().for_each(|(bh, (out, lse))| {
            let (bi, hq) = (bh / h, bh % h);
            let g = bi * kvh + hq / rep;
            let (qh, kg, vg) =
                (&q[bh * n * d..(bh + 1) * n * d], &k[g * n * d..(g + 1) * n * d], &v[g * n * d..(g + 1) * n * d]);
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { simd::forward_head_avx2(self, qh, kg, vg, d, out, lse) };
                return;
            }
            let _ = avx2;
            forward_head(self, qh, kg, vg, d, out, lse);
        });
        *self.lse.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = lse;
        Ok((CpuStorage::F32(out), Shape::from((b, h, n, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, h, n, d) = q.dims4()?;
        let kvh = k.dim(1)?;
        let rep = h / kvh;
        let flat = |t: &Tensor| -> candle_core::Result<Vec<f32>> { t.contiguous()?.flatten_all()?.to_vec1::<f32>() };
        let (qv, kv, vv, ov, dov) = (flat(q)?, flat(k)?, flat(v)?, flat(res)?, flat(grad_res)?);
        let lse = self.lse.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if lse.len() != b * h * n {
            candle_core::bail!("causal attention: backward without its forward pass");
        }
        let mut dq = vec![0f32; b * h * n * d];
        let mut dk = vec![0f32; b * kvh * n * d];
        let mut dv = vec![0f32; b * kvh * n * d];
        let avx2 = has_avx2();
        let (qs, gs) = (rep * n * d, n * d);
        dq.par_chunks_mut(qs).zip(dk.par_chunks_mut(gs)).zip(dv.par_chunks_mut(gs)).enumerate().for_each(
            |(g, ((dq, dk), dv))| {
                let inputs = GroupInputs {
                    q: &qv[g * qs..(g + 1) * qs],
                    k: &kv[g * gs..(g + 1) * gs],
                    v: &vv[g * gs..(g + 1) * gs],
                    o: &ov[g * qs..(g + 1) * qs],
                    dout: &dov[g * qs..(g + 1) * qs],
                    lse: &lse[g * rep * n..(g + 1) * rep * n],
                };
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { simd::backward_group_avx2(self, &inputs, d, dq, dk, dv) };
                    return;
                }
                let _ = avx2;
                backward_group(self, &inputs, d, dq, dk, dv);
            },
        );
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (b, h, n, d), device)?),
            Some(Tensor::from_vec(dk, (b, kvh, n, d), device)?),
            Some(Tensor::from_vec(dv, (b, kvh, n, d), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var, D};

    use super::*;

    /// Attention written out in tensor operations, with its mask.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, window: Option<usize>) -> Tensor {
        let (_, h, n, _) = q.dims4().unwrap();
        let rep = h / k.dim(1).unwrap();
        let expand = |t: &Tensor| {
            let (b, kvh, n, d) = t.dims4().unwrap();
            t.unsqueeze(2).unwrap().expand((b, kvh, rep, n, d)).unwrap().reshape((b, kvh * rep, n, d)).unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let mut mask = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if j > i || window.is_some_and(|w| j + w <= i) {
                    mask[i * n + j] = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (n, n), q.device()).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap().broadcast_add(&mask).unwrap();
        let max = scores.max_keepdim(D::Minus1).unwrap();
        let e = scores.broadcast_sub(&max).unwrap().exp().unwrap();
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        p.matmul(&v).unwrap()
    }

    /// The decoding kernel over an f16 cache gives exactly what it gives over the same
    /// (f16-rounded) values stored as f32, for head sizes on and off its register paths and
    /// key counts on and off its 8-key blocks; and both equal attention in tensor operations.
    #[test]
    fn decode_attention_over_f16_equals_it_over_the_widened_values() {
        let device = Device::Cpu;
        for (d, n, rep) in [(64, 37, 3), (128, 16, 1), (24, 9, 2), (64, 1, 4)] {
            let (b, kvh) = (2, 2);
            let q = Tensor::randn(0f32, 1.0, (b, kvh, rep, d), &device).unwrap();
            let k16 = Tensor::randn(0f32, 1.0, (b, kvh, n, d), &device).unwrap().to_dtype(DType::F16).unwrap();
            let v16 = Tensor::randn(0f32, 1.0, (b, kvh, n, d), &device).unwrap().to_dtype(DType::F16).unwrap();
            let (k32, v32) = (k16.to_dtype(DType::F32).unwrap(), v16.to_dtype(DType::F32).unwrap());
            let op = || DecodeAttention { scale: 0.125 };
            let from16 = q.apply_op3_no_bwd(&k16, &v16, &op()).unwrap();
            let from32 = q.apply_op3_no_bwd(&k32, &v32, &op()).unwrap();
            let a = from16.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a, from32.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "d {d}, n {n}");
            // Reference: softmax(q kᵀ · scale) v per group.
            let scores = (q.matmul(&k32.t().unwrap()).unwrap() * 0.125).unwrap();
            let max = scores.max_keepdim(D::Minus1).unwrap();
            let e = scores.broadcast_sub(&max).unwrap().exp().unwrap();
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
            let want = p.matmul(&v32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = a.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "d {d}, n {n}: {worst}");
        }
        // Keys and values of different types are refused.
        let q = Tensor::zeros((1, 1, 1, 8), DType::F32, &device).unwrap();
        let k = Tensor::zeros((1, 1, 2, 8), DType::F16, &device).unwrap();
        let v = Tensor::zeros((1, 1, 2, 8), DType::F32, &device).unwrap();
        assert!(q.apply_op3_no_bwd(&k, &v, &DecodeAttention { scale: 1.0 }).is_err());
    }

    #[test]
    fn causal_attention_and_its_gradients_equal_the_tensor_version() {
        let device = Device::Cpu;
        for (window, n) in [(None, 19), (Some(5), 23), (None, 1), (None, 150), (Some(40), 131)] {
            let (b, h, kvh, d) = (2, 6, 2, 16);
            let rand = |shape: (usize, usize, usize, usize), seed: u64| {
                let count = shape.0 * shape.1 * shape.2 * shape.3;
                let data: Vec<f32> = (0..count as u64)
                    .map(|i| (((i * 2_654_435_761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
                    .collect();
                Var::from_tensor(&Tensor::from_vec(data, shape, &device).unwrap()).unwrap()
            };
            let (q, k, v) = (rand((b, h, n, d), 1), rand((b, kvh, n, d), 2), rand((b, kvh, n, d), 3));
            let w = Tensor::from_vec(
                (0..b * h * n * d).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect::<Vec<_>>(),
                (b, h, n, d),
                &device,
            )
            .unwrap();
            let scale = 0.25;
            let ours = q
                .as_tensor()
                .apply_op3(k.as_tensor(), v.as_tensor(), CausalAttention::new(scale as f32, window))
                .unwrap();
            let theirs = reference(q.as_tensor(), k.as_tensor(), v.as_tensor(), scale, window);
            let diff = |a: &Tensor, b: &Tensor| {
                a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert!(diff(&ours, &theirs) < 1e-5, "{window:?}: outputs differ by {}", diff(&ours, &theirs));
            let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, c) = (g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
                assert!(diff(a, c) < 1e-4, "{window:?}: d{name} differs by {}", diff(a, c));
            }
        }
    }
}
