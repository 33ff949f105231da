//! f32 matrix products `x · Wᵀ + b` with the weights packed once at load time, for the
//! encoders' dense layers on CPUs with AVX-512 (other CPUs and devices use candle's matmul).
//!
//! The weights `[n, k]` are stored as panels of 32 output columns, each `k × 32` contiguous,
//! so that the 8 × 32 micro-kernel streams one panel while broadcasting 8 activation rows
//! (repacked per `k` block into one stream):
//! 16 accumulators of 16 lanes. Blocks of 384 along `k` keep a panel piece in L1; blocks of
//! 192 activation rows keep them in L2 and are the unit of work of the thread pool.

use rayon::prelude::*;

const NR: usize = 32;
const MR: usize = 8;
const KC: usize = 384;
const MC: usize = 192;

/// A weight matrix `[n, k]` (PyTorch's Linear layout) packed for [`PackedLinear::forward`].
#[derive(Debug, Clone)]
pub struct PackedLinear {
    n: usize,
    k: usize,
    panels: Vec<f32>,
    bias: Vec<f32>,
}

/// Whether this CPU runs the packed kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows per task when `m` rows are split over the thread pool in blocks of at most about `max`
/// rows: a whole multiple of the pool's threads in blocks (so that no thread gets one block more
/// than another), each a multiple of `granularity` rows.
pub(crate) fn rows_per_task(m: usize, max: usize, granularity: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let blocks = m.div_ceil(max).div_ceil(threads) * threads;
    m.div_ceil(blocks).div_ceil(granularity).max(1) * granularity
}

impl PackedLinear {
    /// Packs row-major weights `w` (`n` rows of `k`) and a bias of `n` (zeros when absent).
    pub fn new(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0f32; n_panels * k * NR];
        for p in 0..n_panels {
            let panel = &mut panels[p * k * NR..][..k * NR];
            for col in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + col) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + col] = v;
                }
            }
        }
        let bias = bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
        assert_eq!(bias.len(), n, "bias size");
        Self { n, k, panels, bias }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `x · Wᵀ + b` for `m` rows of `x` (`[m, k]`, row-major): `[m, n]`.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.forward_into(x, m, &mut out);
        out
    }

    /// [`Self::forward`] into `out`, resized to `[m, n]`; a buffer reused at the same size is
    /// neither zeroed nor reallocated.
    pub fn forward_into(&self, x: &[f32], m: usize, out: &mut Vec<f32>) {
        assert_eq!(x.len(), m * self.k, "input size");
        out.resize(m * self.n, 0.0);
        if m == 0 || self.n == 0 {
            return;
        }
        if self.k == 0 {
            // No inputs: every row is the bias.
            for row in out.chunks_exact_mut(self.n) {
                row.copy_from_slice(&self.bias);
            }
            return;
        }
        let per_task = crate::sgemm::rows_per_task(m, MC, MR);
        out.par_chunks_mut(per_task * self.n).enumerate().for_each(|(block, c)| {
            let rows = c.len() / self.n;
            let a = &x[block * per_task * self.k..][..rows * self.k];
            self.block(a, rows, c);
        });
    }

    /// One block of at most `MC` rows.
    fn block(&self, a: &[f32], rows: usize, c: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX-512F is present; every pointer stays inside its slice (see `kernel`).
            unsafe { self.block_avx512(a, rows, c) };
            return;
        }
        self.block_scalar(a, rows, c);
    }

    fn block_scalar(&self, a: &[f32], rows: usize, c: &mut [f32]) {
        for r in 0..rows {
            for j in 0..self.n {
                let (p, col) = (j / NR, j % NR);
                let panel = &self.panels[p * self.k * NR..];
                let mut acc = self.bias[j];
                for kk in 0..self.k {
                    acc += a[r * self.k + kk] * panel[kk * NR + col];
                }
                c[r * self.n + j] = acc;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_avx512(&self, a: &[f32], rows: usize, c: &mut [f32]) {
        let n_panels = self.n.div_ceil(NR);
        let groups = rows.div_ceil(MR);
        // The activations of one k block, repacked so that each group of MR rows reads as one
        // stream: `packed[(g * kc + kk) * MR + r] = a[g * MR + r][kb + kk]` (zeros past the end).
        let mut packed = vec![0f32; groups * KC * MR];
        let mut kb = 0;
        while kb < self.k {
            let kc = KC.min(self.k - kb);
            for g in 0..groups {
                let dst = &mut packed[g * kc * MR..][..kc * MR];
                for r in 0..MR {
                    let row = g * MR + r;
                    if row < rows {
                        for (kk, &v) in a[row * self.k + kb..][..kc].iter().enumerate() {
                            dst[kk * MR + r] = v;
                        }
                    } else {
                        for kk in 0..kc {
                            dst[kk * MR + r] = 0.0;
                        }
                    }
                }
            }
            for p in 0..n_panels {
                let cols = NR.min(self.n - p * NR);
                let b = self.panels.as_ptr().add(p * self.k * NR + kb * NR);
                let bias = (kb == 0).then(|| self.bias.as_ptr().add(p * NR));
                for g in 0..groups {
                    let r = g * MR;
                    let mr = MR.min(rows - r);
                    let ap = packed.as_ptr().add(g * kc * MR);
                    let cp = c.as_mut_ptr().add(r * self.n + p * NR);
                    match mr {
                        8 => kernel::<8>(ap, b, kc, cp, self.n, cols, bias),
                        7 => kernel::<7>(ap, b, kc, cp, self.n, cols, bias),
                        6 => kernel::<6>(ap, b, kc, cp, self.n, cols, bias),
                        5 => kernel::<5>(ap, b, kc, cp, self.n, cols, bias),
                        4 => kernel::<4>(ap, b, kc, cp, self.n, cols, bias),
                        3 => kernel::<3>(ap, b, kc, cp, self.n, cols, bias),
                        2 => kernel::<2>(ap, b, kc, cp, self.n, cols, bias),
                        _ => kernel::<1>(ap, b, kc, cp, self.n, cols, bias),
                    }
                }
            }
            kb += kc;
        }
    }
}

/// `R` rows × 32 columns of C += A[R, kc] · B[kc, 32] (both packed: A as `kc` groups of `MR`
/// values, B as `kc` rows of 32); with `bias`, C starts from the bias instead of its
/// contents. Only the first `cols` columns of C are read or written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    a: *const f32,
    b: *const f32,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: Option<*const f32>,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_loadu_ps, _mm512_mask_storeu_ps, _mm512_set1_ps,
        _mm512_setzero_ps,
    };
    let m0: u16 = if cols >= 16 { 0xffff } else { ((1u32 << cols) - 1) as u16 };
    let m1: u16 = if cols >= 32 {
        0xffff
    } else if cols > 16 {
        ((1u32 << (cols - 16)) - 1) as u16
    } else {
        0
    };
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    match bias {
        Some(bp) => {
            let b0 = _mm512_mask_loadu_ps(_mm512_setzero_ps(), m0, bp);
            let b1 = _mm512_mask_loadu_ps(_mm512_setzero_ps(), m1, bp.add(16));
            acc.fill([b0, b1]);
        }
        None => {
            for (r, row) in acc.iter_mut().enumerate() {
                let cr = c.add(r * ldc);
                *row = [
                    _mm512_mask_loadu_ps(_mm512_setzero_ps(), m0, cr),
                    _mm512_mask_loadu_ps(_mm512_setzero_ps(), m1, cr.add(16)),
                ];
            }
        }
    }
    for kk in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(kk * MR + r));
            row[0] = _mm512_fmadd_ps(av, b0, row[0]);
            row[1] = _mm512_fmadd_ps(av, b1, row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        _mm512_mask_storeu_ps(cr, m0, row[0]);
        _mm512_mask_storeu_ps(cr.add(16), m1, row[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(w: &[f32], n: usize, k: usize, b: &[f32], x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let mut acc = f64::from(b[j]);
                for kk in 0..k {
                    acc += f64::from(x[r * k + kk]) * f64::from(w[j * k + kk]);
                }
                out[r * n + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn equals_the_plain_product_for_odd_shapes() {
        let mut state = 12345u32;
        let mut rnd = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (m, n, k) in [(1, 1, 1), (2, 3, 0), (3, 8, 5), (9, 33, 300), (200, 64, 513), (17, 50, 20), (2, 2, 8)] {
            let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let want = reference(&w, n, k, &b, &x, m);
            let p = PackedLinear::new(&w, n, k, Some(&b));
            let got = p.forward(&x, m);
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{m}x{n}x{k}: {worst}");
            let mut scalar = vec![0f32; m * n];
            for (block, c) in scalar.chunks_mut(MC * n).enumerate() {
                let rows = c.len() / n;
                p.block_scalar(&x[block * MC * k..][..rows * k], rows, c);
            }
            let worst = want.iter().zip(&scalar).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "scalar {m}x{n}x{k}: {worst}");
        }
    }
}
