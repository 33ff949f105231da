//! bf16 matrix products `x · Wᵀ + b` on Intel AMX (4th-generation Xeon and later), for the
//! encoders' dense layers when they run in bf16 (`Precision::Bf16`).
//!
//! Both operands are rounded to bf16 (round to nearest even) and the products accumulate in
//! f32, as `torch.matmul` does on bf16 tensors. The weights `[n, k]` are packed once into AMX
//! B tiles: per panel of 32 output columns and per block of 32 along `k`, two tiles of 16 rows
//! (pairs of `k`) × 16 columns × 2. The activations are rounded into a `[m32, k32]` buffer
//! (rows and `k` padded with zeros to multiples of 32) and read as A tiles in place. The
//! micro-kernel keeps a 32 × 32 block of C in four tiles (tmm0–3), two A tiles (tmm4–5) and two
//! B tiles (tmm6–7) and runs four `tdpbf16ps` per block of `k`.
//!
//! Where the CPU or the kernel lacks AMX, the rounded weights (exact in f32) run through
//! candle's f32 matmul on the rounded activations: the same operands, another summation order,
//! so `bf16` gives the same numbers (to f32 rounding) on every CPU.

// The conversions are inlined into the `#[target_feature]` loops that vectorize them.
#![allow(clippy::inline_always)]

use std::sync::OnceLock;

use rayon::prelude::*;

/// Output columns per panel (two B tiles of 16).
const NP: usize = 32;
/// `k` values per tile (16 rows of pairs).
const KB: usize = 32;
/// Rows of C per micro-kernel call (two A tiles of 16).
const MB: usize = 32;
/// Rows of C per unit of work of the thread pool.
const MC: usize = 192;
/// bf16 elements in one B tile.
const TILE: usize = 16 * 32;

/// Whether this CPU and kernel run AMX-BF16 (checked once; on Linux the first call asks the
/// kernel for the tile state with `arch_prctl(ARCH_REQ_XCOMP_PERM)`).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE; the rounding and the copies use AVX-512.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    let r = std::arch::x86_64::__cpuid_count(7, 0);
    if (r.edx >> 22) & 1 == 0 || (r.edx >> 24) & 1 == 0 || !std::is_x86_feature_detected!("avx512f") {
        return false;
    }
    // SAFETY: arch_prctl with these arguments only changes which register state the kernel
    // lets this process use.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// f32 → bf16 bits, rounding to nearest even (`half::bf16`, as `torch.Tensor.bfloat16`).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// bf16 bits → f32 (exact).
#[inline(always)]
pub fn from_bf16(x: u16) -> f32 {
    half::bf16::from_bits(x).to_f32()
}

/// A weight matrix `[n, k]` packed in bf16 for AMX, with an f32 bias.
#[derive(Debug, Clone)]
pub struct Bf16Linear {
    n: usize,
    k: usize,
    /// `k` rounded up to a whole number of blocks.
    k32: usize,
    tiles: Vec<u16>,
    /// The bias, padded with zeros to whole panels (C tiles start from it).
    bias: Vec<f32>,
    /// Without AMX: the rounded weights transposed, `[k, n]` f32, for candle's matmul.
    fallback: Option<candle_core::Tensor>,
}

impl Bf16Linear {
    /// Packs row-major weights `w` (`n` rows of `k`) and a bias of `n` (zeros when absent), for
    /// AMX where this CPU has it.
    pub fn new(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> candle_core::Result<Self> {
        Self::build(w, n, k, bias, available())
    }

    fn build(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>, amx: bool) -> candle_core::Result<Self> {
        assert_eq!(w.len(), n * k, "weight size");
        let k32 = k.div_ceil(KB) * KB;
        let (panels, blocks) = (n.div_ceil(NP), k32 / KB);
        let mut padded = vec![0f32; panels * NP];
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "bias size");
            padded[..n].copy_from_slice(b);
        }
        if !amx {
            let mut wt = vec![0f32; k * n];
            for (col, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
                for (kk, &v) in row.iter().enumerate() {
                    wt[kk * n + col] = from_bf16(to_bf16(v));
                }
            }
            let wt = candle_core::Tensor::from_vec(wt, (k, n), &candle_core::Device::Cpu)?;
            return Ok(Self { n, k, k32, tiles: Vec::new(), bias: padded, fallback: Some(wt) });
        }
        let mut tiles = vec![0u16; panels * blocks * 2 * TILE];
        for col in 0..n {
            let (p, half, c) = (col / NP, (col % NP) / 16, col % 16);
            for (kk, &v) in w[col * k..][..k].iter().enumerate() {
                let (kb, pair, e) = (kk / KB, (kk % KB) / 2, kk % 2);
                tiles[((p * blocks + kb) * 2 + half) * TILE + pair * 32 + c * 2 + e] = to_bf16(v);
            }
        }
        Ok(Self { n, k, k32, tiles, bias: padded, fallback: None })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `x · Wᵀ + b` for `m` rows of `x` (`[m, k]`, row-major) into `out`, resized to `[m, n]`.
    pub fn forward_into(&self, x: &[f32], m: usize, out: &mut Vec<f32>) {
        assert_eq!(x.len(), m * self.k, "input size");
        out.resize(m * self.n, 0.0);
        if m == 0 || self.n == 0 {
            return;
        }
        if let Some(wt) = &self.fallback {
            let rounded: Vec<f32> = x.iter().map(|&v| from_bf16(to_bf16(v))).collect();
            let y: Vec<f32> = candle_core::Tensor::from_vec(rounded, (m, self.k), &candle_core::Device::Cpu)
                .and_then(|t| t.matmul(wt))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("an f32 product of shapes checked at construction");
            for (o, yrow) in out.chunks_exact_mut(self.n).zip(y.chunks_exact(self.n)) {
                for ((o, &v), &b) in o.iter_mut().zip(yrow).zip(&self.bias) {
                    *o = v + b;
                }
            }
            return;
        }
        let per_task = crate::sgemm::rows_per_task(m, MC, 16);
        out.par_chunks_mut(per_task * self.n).enumerate().for_each(|(block, c)| {
            let rows = c.len() / self.n;
            let a = &x[block * per_task * self.k..][..rows * self.k];
            // SAFETY: without a fallback the weights were packed because `available()` found
            // AMX-BF16 and AVX-512F and the tile state was granted; every tile access stays
            // inside its buffer (see `block_amx`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                self.block_amx(a, rows, c);
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("AMX packing on a CPU without AMX ({rows} rows, {} outputs)", c.len());
        });
    }

    /// One block of at most `MC` rows on AMX.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_amx(&self, a: &[f32], rows: usize, c: &mut [f32]) {
        let (k, k32, n) = (self.k, self.k32, self.n);
        let m32 = rows.div_ceil(MB) * MB;
        // The activations in bf16, rows and k padded with zeros: `[m32, k32]`.
        let mut ab = vec![0u16; m32 * k32];
        for (dst, src) in ab.chunks_exact_mut(k32).zip(a.chunks_exact(k)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = to_bf16(s);
            }
        }
        let blocks = k32 / KB;
        let mut cblock = [0f32; MB * NP];
        let config = TileConfig::new();
        tile_config(&config);
        // A group of 32 rows stays in L1 while the panels of B stream by.
        for g in (0..m32).step_by(MB) {
            let a0 = ab.as_ptr().add(g * k32);
            let live = MB.min(rows - g);
            for p in 0..n.div_ceil(NP) {
                let cols = NP.min(n - p * NP);
                let b = self.tiles.as_ptr().add(p * blocks * 2 * TILE);
                let bias = self.bias.as_ptr().add(p * NP);
                if live == MB && cols == NP {
                    // A whole block: the tiles go straight to the output.
                    micro_kernel(a0, k32 * 2, b, blocks, bias, c.as_mut_ptr().add(g * n + p * NP), n * 4);
                } else {
                    micro_kernel(a0, k32 * 2, b, blocks, bias, cblock.as_mut_ptr(), NP * 4);
                    for r in 0..live {
                        c[(g + r) * n + p * NP..][..cols].copy_from_slice(&cblock[r * NP..][..cols]);
                    }
                }
            }
        }
        tile_release();
    }
}

/// AMX tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    fn new() -> Self {
        let mut colsb = [0u16; 16];
        let mut rows = [0u8; 16];
        colsb[..8].fill(64);
        rows[..8].fill(16);
        Self { palette: 1, start_row: 0, reserved: [0; 14], colsb, rows }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn tile_config(config: &TileConfig) {
    std::arch::asm!("ldtilecfg [{0}]", in(reg) std::ptr::from_ref(config), options(nostack, readonly));
}

#[cfg(target_arch = "x86_64")]
unsafe fn tile_release() {
    std::arch::asm!("tilerelease", options(nostack, nomem));
}

/// C (32 × 32 f32, row stride `c_stride` bytes) = bias (32 f32, on every row) + A (32 rows of
/// `blocks` × 32 bf16, row stride `a_stride` bytes) · B (the `blocks` pairs of packed B tiles
/// of one panel).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn micro_kernel(
    a: *const u16,
    a_stride: usize,
    b: *const u16,
    blocks: usize,
    bias: *const f32,
    c: *mut f32,
    c_stride: usize,
) {
    use std::arch::asm;
    // A row stride of 0 repeats the bias on all 16 rows of each C tile.
    asm!(
        "tileloadd tmm0, [{b0} + {z}*1]",
        "tileloadd tmm1, [{b1} + {z}*1]",
        "tileloadd tmm2, [{b0} + {z}*1]",
        "tileloadd tmm3, [{b1} + {z}*1]",
        b0 = in(reg) bias,
        b1 = in(reg) bias.add(16),
        z = in(reg) 0usize,
        options(nostack, readonly),
    );
    let a1 = a.byte_add(16 * a_stride);
    for kb in 0..blocks {
        let b0 = b.add(kb * 2 * TILE);
        asm!(
            // Tile registers are not renamed: each load is placed right before its first
            // use, so that it overlaps the products of the tiles already loaded.
            "tileloadd tmm6, [{b0} + {bs}*1]",
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {bs}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a.add(kb * KB),
            a1 = in(reg) a1.add(kb * KB),
            b0 = in(reg) b0,
            b1 = in(reg) b0.add(TILE),
            s = in(reg) a_stride,
            bs = in(reg) 64usize,
            options(nostack, readonly),
        );
    }
    asm!(
        "tilestored [{c0} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(16),
        c2 = in(reg) c.byte_add(16 * c_stride),
        c3 = in(reg) c.byte_add(16 * c_stride).add(16),
        s = in(reg) c_stride,
        options(nostack),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product of the bf16-rounded operands in f64.
    fn reference(w: &[f32], n: usize, k: usize, b: &[f32], x: &[f32], m: usize) -> Vec<f32> {
        let r = |v: f32| f64::from(from_bf16(to_bf16(v)));
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = f64::from(b[j]);
                for kk in 0..k {
                    acc += r(x[i * k + kk]) * r(w[j * k + kk]);
                }
                out[i * n + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn equals_the_product_of_the_rounded_operands() {
        let mut state = 7u32;
        let mut rnd = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        eprintln!("AMX-BF16 available: {}", available());
        for (m, n, k) in [(1, 1, 1), (3, 8, 5), (33, 33, 40), (200, 64, 384), (17, 50, 70), (250, 96, 1536)] {
            let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let want = reference(&w, n, k, &b, &x, m);
            let paths = if available() { vec![true, false] } else { vec![false] };
            for amx in paths {
                let lin = Bf16Linear::build(&w, n, k, Some(&b), amx).unwrap();
                let mut got = Vec::new();
                lin.forward_into(&x, m, &mut got);
                let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 2e-5 * (k as f32).sqrt(), "AMX {amx}, {m}x{n}x{k}: {worst}");
            }
        }
    }
}
