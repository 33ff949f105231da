//! The many-row product on AVX-512 VNNI: two weight rows times eight activation rows per
//! pass, each 512-bit register holding two activation rows (eight i32 / f32 lanes each).
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

/// Activation rows per tile.
pub(super) const ROWS: usize = 8;

/// Whether this CPU runs these kernels (and they are not turned off).
pub(super) fn available() -> bool {
    std::env::var_os("LONGCTX_SCALAR_KERNELS").is_none()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512dq")
}

/// The first `tiles · ROWS` quantized activation rows re-laid tile by tile, block by block:
/// the eight rows' 32 values (256 bytes), their scales each repeated over eight lanes, and
/// Q8_1's `d · Σq` (one per row).
pub(super) struct Tiles {
    /// Whole tiles.
    pub(super) count: usize,
    nb: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl Tiles {
    /// The whole tiles of `x` (`nb` blocks per row).
    pub(super) fn new(x: &Q8Rows, nb: usize, m: usize) -> Self {
        let tiles = m / ROWS;
        let mut q = vec![0i8; tiles * nb * ROWS * QK];
        let mut d = vec![0f32; tiles * nb * ROWS * 8];
        let with_s = !x.s.is_empty();
        let mut s = vec![0f32; if with_s { tiles * nb * ROWS } else { 0 }];
        for t in 0..tiles {
            for b in 0..nb {
                let at = t * nb + b;
                for r in 0..ROWS {
                    let src = (t * ROWS + r) * nb + b;
                    q[(at * ROWS + r) * QK..(at * ROWS + r + 1) * QK].copy_from_slice(&x.q[src * QK..(src + 1) * QK]);
                    d[(at * ROWS + r) * 8..(at * ROWS + r + 1) * 8].fill(x.d[src]);
                    if with_s {
                        s[at * ROWS + r] = x.s[src];
                    }
                }
            }
        }
        Self { count: tiles, nb, q, d, s }
    }
}

/// Weight rows `w` (`MR` rows of `nb` blocks, consecutive) times tile `t` of `x`: row `j`'s
/// eight results go to `out[j * stride..][..8]`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL, DQ and VNNI ([`available`]); `out` must hold
/// `(MR - 1) * stride + 8` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma")]
pub(super) unsafe fn tile<const MR: usize>(w: WeightRows<'_>, x: &Tiles, t: usize, out: &mut [f32], stride: usize) {
    let (kind, nb) = (w.kind, x.nb);
    debug_assert_eq!(w.d.len(), MR * nb);
    debug_assert!(out.len() >= (MR - 1) * stride + ROWS);
    let mut acc = [[_mm512_setzero_ps(); 4]; MR];
    let mut mins = [_mm256_setzero_ps(); MR];
    // The unsigned offset Q4_0's and Q8_0's weights carry here.
    let offset = _mm512_set1_epi8(if kind == BlockKind::Q8_0 { -128 } else { 8 });
    let qb = kind.quant_bytes();
    for b in 0..nb {
        let at = t * nb + b;
        let xq = x.q.as_ptr().add(at * ROWS * QK);
        let xd = x.d.as_ptr().add(at * ROWS * 8);
        let xv: [__m512i; 4] = std::array::from_fn(|p| _mm512_loadu_si512(xq.add(p * 64).cast()));
        let dv: [__m512; 4] = std::array::from_fn(|p| _mm512_loadu_ps(xd.add(p * 16)));
        let corr: [__m512i; 4] = if kind == BlockKind::Q4_1 {
            [_mm512_setzero_si512(); 4]
        } else {
            std::array::from_fn(|p| _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, xv[p]))
        };
        for j in 0..MR {
            let wb = j * nb + b;
            let wv = _mm512_broadcast_i64x4(unsigned_weights(kind, w.q.as_ptr().add(wb * qb)));
            let wd = _mm512_set1_ps(*w.d.get_unchecked(wb));
            for p in 0..4 {
                let mut sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv[p]);
                if kind != BlockKind::Q4_1 {
                    sums = _mm512_sub_epi32(sums, corr[p]);
                }
                acc[j][p] = _mm512_fmadd_ps(_mm512_mul_ps(wd, dv[p]), _mm512_cvtepi32_ps(sums), acc[j][p]);
            }
            if kind == BlockKind::Q4_1 {
                let xs = _mm256_loadu_ps(x.s.as_ptr().add(at * ROWS));
                mins[j] = _mm256_add_ps(mins[j], _mm256_mul_ps(_mm256_set1_ps(*w.m.get_unchecked(wb)), xs));
            }
        }
    }
    for j in 0..MR {
        let mut m = [0f32; ROWS];
        _mm256_storeu_ps(m.as_mut_ptr(), mins[j]);
        let row = &mut out[j * stride..j * stride + ROWS];
        for p in 0..4 {
            row[2 * p] = hsum(_mm512_castps512_ps256(acc[j][p])) + m[2 * p];
            row[2 * p + 1] = hsum(_mm512_extractf32x8_ps::<1>(acc[j][p])) + m[2 * p + 1];
        }
    }
}

/// Zeroes ZMM16–31 and the upper halves of the other vector registers. Registers 16–31 left
/// non-zero by [`tile`] keep the core in its 512-bit mode (lower clock, a vector port shut)
/// after the product, which halved the speed of the decoding that follows a prefill;
/// `vzeroupper`, which the compiler adds, does not clear them.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn clear_upper_state() {
    std::arch::asm!(
        "vpxord zmm16, zmm16, zmm16",
        "vpxord zmm17, zmm17, zmm17",
        "vpxord zmm18, zmm18, zmm18",
        "vpxord zmm19, zmm19, zmm19",
        "vpxord zmm20, zmm20, zmm20",
        "vpxord zmm21, zmm21, zmm21",
        "vpxord zmm22, zmm22, zmm22",
        "vpxord zmm23, zmm23, zmm23",
        "vpxord zmm24, zmm24, zmm24",
        "vpxord zmm25, zmm25, zmm25",
        "vpxord zmm26, zmm26, zmm26",
        "vpxord zmm27, zmm27, zmm27",
        "vpxord zmm28, zmm28, zmm28",
        "vpxord zmm29, zmm29, zmm29",
        "vpxord zmm30, zmm30, zmm30",
        "vpxord zmm31, zmm31, zmm31",
        "vzeroupper",
        out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
        out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
        out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
        options(nomem, nostack, preserves_flags),
    );
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
