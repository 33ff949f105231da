//! The many-row product on AVX-512 VNNI: two weight rows times eight (or four) activation rows
//! per pass, each 512-bit register holding two activation rows (eight i32 / f32 lanes each).
//!
//! Every lane computes what the 256-bit kernels ([`super::x86`]) compute for its row, in the
//! same order — the block's integer sums (exact), `fma(d_w · d_x, sum, acc)` per block, the
//! 8-lane horizontal sum, then Q4_1's `Σ m_w · s_x` — so a row's result is bit for bit the one
//! it gets alone (decoding) or in any other batch. AVX-512 has no `vpsignb`: Q4_0's `q - 8`
//! and Q8_0's signed `q` enter `vpdpbusd` as unsigned `q` (`q + 128`), and the exact
//! `8 · Σx` (`128 · Σx`) per lane is taken off the integer sums.

use std::arch::x86_64::{
    __m256i, __m512, __m512i, _mm256_add_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_mul_ps, _mm256_set1_epi8,
    _mm256_set1_ps, _mm256_set_m128i, _mm256_setzero_ps, _mm256_storeu_ps, _mm256_xor_si256, _mm512_broadcast_i64x4,
    _mm512_castps512_ps256, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_extractf32x8_ps, _mm512_fmadd_ps,
    _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps, _mm512_set1_epi8, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_setzero_si512, _mm512_sub_epi32, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8, _mm_srli_epi16,
};

use super::x86::hsum;
use super::{BlockKind, Q8Rows, WeightRows, QK};

/// Activation rows per tile: eight while that many are left, then four.
pub(super) const ROWS: [usize; 2] = [8, 4];

/// Whether this CPU runs these kernels (and they are not turned off).
pub(super) fn available() -> bool {
    std::env::var_os("LONGCTX_SCALAR_KERNELS").is_none()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512dq")
}

/// The first `covered` quantized activation rows re-laid tile by tile, block by block: a
/// tile's rows' 32 values, their scales each repeated over eight lanes (two rows per 16-lane
/// register), and Q8_1's `d · Σq` (one per row).
pub(super) struct Tiles {
    /// The tiles: first row and row count (8 or 4).
    pub(super) spans: Vec<(usize, usize)>,
    /// Rows in the tiles (the rest go through the 256-bit kernels).
    pub(super) covered: usize,
    nb: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    /// Padded by 8, so that a four-row tile can load eight lanes.
    s: Vec<f32>,
}

impl Tiles {
    /// The tiles of the `m` rows of `x` (`nb` blocks per row).
    pub(super) fn new(x: &Q8Rows, nb: usize, m: usize) -> Self {
        let mut spans = Vec::new();
        let mut covered = 0;
        for rows in ROWS {
            while m - covered >= rows {
                spans.push((covered, rows));
                covered += rows;
            }
        }
        let mut q = vec![0i8; covered * nb * QK];
        let mut d = vec![0f32; covered * nb * 8];
        let with_s = !x.s.is_empty();
        let mut s = vec![0f32; if with_s { covered * nb + 8 } else { 0 }];
        for &(first, rows) in &spans {
            for b in 0..nb {
                for r in 0..rows {
                    let (src, dst) = ((first + r) * nb + b, first * nb + b * rows + r);
                    q[dst * QK..(dst + 1) * QK].copy_from_slice(&x.q[src * QK..(src + 1) * QK]);
                    d[dst * 8..(dst + 1) * 8].fill(x.d[src]);
                    if with_s {
                        s[dst] = x.s[src];
                    }
                }
            }
        }
        Self { spans, covered, nb, q, d, s }
    }
}

/// Weight rows `w` (`MR` rows of `nb` blocks, consecutive) times the tile of `2 · P` rows
/// starting at activation row `first`: row `j`'s results go to `out[j * stride..][..2 * P]`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL, DQ and VNNI ([`available`]); `(first, 2 · P)` must be
/// one of `x`'s spans, and `out` must hold `(MR - 1) * stride + 2 * P` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma")]
pub(super) unsafe fn tile<const MR: usize, const P: usize>(
    w: WeightRows<'_>,
    x: &Tiles,
    first: usize,
    out: &mut [f32],
    stride: usize,
) {
    let (kind, nb) = (w.kind, x.nb);
    let rows = 2 * P;
    debug_assert_eq!(w.d.len(), MR * nb);
    debug_assert!(x.spans.contains(&(first, rows)));
    debug_assert!(out.len() >= (MR - 1) * stride + rows);
    let mut acc = [[_mm512_setzero_ps(); P]; MR];
    let mut mins = [_mm256_setzero_ps(); MR];
    // The unsigned offset Q4_0's and Q8_0's weights carry here.
    let offset = _mm512_set1_epi8(if kind == BlockKind::Q8_0 { -128 } else { 8 });
    let qb = kind.quant_bytes();
    for b in 0..nb {
        let at = first * nb + b * rows;
        let xq = x.q.as_ptr().add(at * QK);
        let xd = x.d.as_ptr().add(at * 8);
        let xv: [__m512i; P] = std::array::from_fn(|p| _mm512_loadu_si512(xq.add(p * 64).cast()));
        let dv: [__m512; P] = std::array::from_fn(|p| _mm512_loadu_ps(xd.add(p * 16)));
        let corr: [__m512i; P] = if kind == BlockKind::Q4_1 {
            [_mm512_setzero_si512(); P]
        } else {
            std::array::from_fn(|p| _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, xv[p]))
        };
        for j in 0..MR {
            let wb = j * nb + b;
            let wv = _mm512_broadcast_i64x4(unsigned_weights(kind, w.q.as_ptr().add(wb * qb)));
            let wd = _mm512_set1_ps(*w.d.get_unchecked(wb));
            for p in 0..P {
                let mut sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv[p]);
                if kind != BlockKind::Q4_1 {
                    sums = _mm512_sub_epi32(sums, corr[p]);
                }
                acc[j][p] = _mm512_fmadd_ps(_mm512_mul_ps(wd, dv[p]), _mm512_cvtepi32_ps(sums), acc[j][p]);
            }
            if kind == BlockKind::Q4_1 {
                // Lanes past the tile's rows are not used.
                let xs = _mm256_loadu_ps(x.s.as_ptr().add(at));
                mins[j] = _mm256_add_ps(mins[j], _mm256_mul_ps(_mm256_set1_ps(*w.m.get_unchecked(wb)), xs));
            }
        }
    }
    for j in 0..MR {
        let mut m = [0f32; 8];
        _mm256_storeu_ps(m.as_mut_ptr(), mins[j]);
        let row = &mut out[j * stride..j * stride + rows];
        for p in 0..P {
            row[2 * p] = hsum(_mm512_castps512_ps256(acc[j][p])) + m[2 * p];
            row[2 * p + 1] = hsum(_mm512_extractf32x8_ps::<1>(acc[j][p])) + m[2 * p + 1];
        }
    }
}

/// Block `b`'s 32 weights (at `wq`) as unsigned bytes, in the activations' order: Q4's
/// nibbles `q` (Q4_0's offset 8 is taken off the sums), Q8_0's `q + 128`.
// Inlined into `tile`, which has the target features.
#[allow(clippy::inline_always)]
#[inline(always)]
unsafe fn unsigned_weights(kind: BlockKind, wq: *const u8) -> __m256i {
    if kind == BlockKind::Q8_0 {
        return _mm256_xor_si256(_mm256_loadu_si256(wq.cast()), _mm256_set1_epi8(-128));
    }
    let mask = _mm_set1_epi8(0x0F);
    let bytes = _mm_loadu_si128(wq.cast());
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), _mm_and_si128(bytes, mask))
}
