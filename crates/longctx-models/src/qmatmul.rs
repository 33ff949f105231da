//! Matrix products with GGUF's "legacy" block types Q4_0, Q4_1 and Q8_0, as llama.cpp computes
//! them: the activations are quantized per 32-value block to 8 bits (Q8_0 for Q4_0 and Q8_0
//! weights, Q8_1 — which also stores `d · Σq` — for Q4_1), each block product is an exact
//! integer sum, and the blocks are combined in f32: `Σ_b d_w·d_x·Σ q_w q_x` (+ `m_w·s_x` for
//! Q4_1).
//!
//! candle runs Q4_1 with a scalar dot product; this module has AVX2 (and AVX-VNNI) kernels
//! chosen at run time, AVX-512 VNNI tiles for four or more activation rows (bit for bit the
//! same per row; module `avx512`), a scalar path that is also the tests' reference, and splits the
//! output rows over rayon's pool (one kernel call per task when decoding). The activation
//! quantization follows ggml's x86 path (`id = 127 / amax`, round half to even, `d` and `s`
//! stored as f16). While training ([`Products::Dequantized`]) the products run in f32 on the
//! dequantized weights instead, and pass gradients back.

use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod avx512;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;
use rayon::prelude::*;

/// Values per quantization block.
const QK: usize = 32;

/// Which 4-bit layout the weights have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `q · d` with `q` in `-8..8` (18-byte blocks: f16 d, 16 bytes of nibbles).
    Q4_0,
    /// `q · d + m` with `q` in `0..16` (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles).
    Q4_1,
    /// `q · d` with `q` an i8 (34-byte blocks: f16 d, 32 bytes).
    Q8_0,
}

impl BlockKind {
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            BlockKind::Q4_0 => 18,
            BlockKind::Q4_1 => 20,
            BlockKind::Q8_0 => 34,
        }
    }

    /// Bytes of quantized values per block.
    fn quant_bytes(self) -> usize {
        if self == BlockKind::Q8_0 {
            32
        } else {
            16
        }
    }
}

/// A `[rows, cols]` matrix of Q4_0, Q4_1 or Q8_0 blocks, unpacked for the kernels: the
/// quantized values, and the block scales (and minimums) widened to f32 once at load.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    kind: BlockKind,
    rows: usize,
    cols: usize,
    /// The quantized values: for Q4 16 bytes per block, element `i < 16` in the low nibble of
    /// byte `i` and `16 + i` in its high nibble (ggml's order); for Q8_0 32 i8 per block.
    nibbles: Vec<u8>,
    scales: Vec<f32>,
    /// Q4_1's per-block minimum (empty for the other kinds).
    mins: Vec<f32>,
}

/// Activations quantized to 8 bits per 32-value block.
struct Q8Rows {
    q: Vec<i8>,
    d: Vec<f32>,
    /// `d · Σq` per block, through f16 as ggml stores it (Q8_1 only).
    s: Vec<f32>,
}

impl Q8Rows {
    /// All the rows, borrowed for the kernels.
    fn view(&self) -> ActRows<'_> {
        ActRows { q: &self.q, d: &self.d, s: &self.s }
    }
}

/// Consecutive weight rows of one [`QuantMatrix`], `nb` blocks each: the kernels' weight operand.
#[derive(Debug, Clone, Copy)]
struct WeightRows<'a> {
    kind: BlockKind,
    /// Quantized values, [`BlockKind::quant_bytes`] per block.
    q: &'a [u8],
    /// Block scales.
    d: &'a [f32],
    /// Q4_1's block minimums (empty for the other kinds).
    m: &'a [f32],
}

impl WeightRows<'_> {
    /// Rows `rows` of these, counted from the first.
    // Inlined into the kernels' row loops, where the kind is then known per loop.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn rows(self, rows: Range<usize>, nb: usize) -> Self {
        // The branch on the kind first: LLVM then specialises the kernels' loops per kind.
        let m = if self.kind == BlockKind::Q4_1 { &self.m[rows.start * nb..rows.end * nb] } else { self.m };
        let qb = self.kind.quant_bytes();
        let (q, d) = (&self.q[rows.start * nb * qb..rows.end * nb * qb], &self.d[rows.start * nb..rows.end * nb]);
        Self { kind: self.kind, q, d, m }
    }
}

/// Consecutive rows of quantized activations ([`Q8Rows`]), `nb` blocks each: the kernels'
/// activation operand.
#[derive(Debug, Clone, Copy)]
struct ActRows<'a> {
    /// `QK` values per block.
    q: &'a [i8],
    /// Block scales.
    d: &'a [f32],
    /// Q8_1's `d · Σq` per block (empty for the other kinds).
    s: &'a [f32],
}

impl ActRows<'_> {
    /// Rows `rows` of these, counted from the first.
    fn rows(self, rows: Range<usize>, nb: usize) -> Self {
        Self {
            q: &self.q[rows.start * nb * QK..rows.end * nb * QK],
            d: &self.d[rows.start * nb..rows.end * nb],
            // Empty unless the weights are Q4_1.
            s: if self.s.is_empty() { self.s } else { &self.s[rows.start * nb..rows.end * nb] },
        }
    }
}

impl QuantMatrix {
    /// Unpacks raw GGML blocks of a `[rows, cols]` matrix.
    pub fn from_ggml(kind: BlockKind, rows: usize, cols: usize, data: &[u8]) -> candle_core::Result<Self> {
        if !cols.is_multiple_of(QK) {
            candle_core::bail!("{kind:?} matrix with {cols} columns (not a multiple of {QK})");
        }
        let blocks = rows * cols / QK;
        if data.len() != blocks * kind.block_bytes() {
            candle_core::bail!("{kind:?} data of {} bytes for a {rows}x{cols} matrix", data.len());
        }
        let mut nibbles = Vec::with_capacity(blocks * kind.quant_bytes());
        let mut scales = Vec::with_capacity(blocks);
        let mut mins = Vec::with_capacity(if kind == BlockKind::Q4_1 { blocks } else { 0 });
        for block in data.chunks_exact(kind.block_bytes()) {
            scales.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            let qs = match kind {
                BlockKind::Q4_0 | BlockKind::Q8_0 => &block[2..],
                BlockKind::Q4_1 => {
                    mins.push(f16::from_le_bytes([block[2], block[3]]).to_f32());
                    &block[4..]
                }
            };
            nibbles.extend_from_slice(qs);
        }
        Ok(Self { kind, rows, cols, nibbles, scales, mins })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All the rows, borrowed for the kernels.
    fn weights(&self) -> WeightRows<'_> {
        WeightRows { kind: self.kind, q: &self.nibbles, d: &self.scales, m: &self.mins }
    }

    /// Rows `ids` as f32 `[ids.len(), cols]` (an embedding lookup).
    pub fn rows_f32(&self, ids: &[u32]) -> Vec<f32> {
        let nb = self.cols / QK;
        let qb = self.kind.quant_bytes();
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let j = id as usize;
            for b in j * nb..(j + 1) * nb {
                let qs = &self.nibbles[b * qb..(b + 1) * qb];
                let (d, m) = (self.scales[b], self.mins.get(b).copied().unwrap_or(0.0));
                match self.kind {
                    BlockKind::Q8_0 => out.extend(qs.iter().map(|&q| f32::from(i8::from_ne_bytes([q])) * d)),
                    BlockKind::Q4_0 => {
                        out.extend(qs.iter().map(|&q| (f32::from(q & 0x0F) - 8.0) * d));
                        out.extend(qs.iter().map(|&q| (f32::from(q >> 4) - 8.0) * d));
                    }
                    BlockKind::Q4_1 => {
                        out.extend(qs.iter().map(|&q| f32::from(q & 0x0F) * d + m));
                        out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
                    }
                }
            }
        }
        out
    }

    /// The weights as f32 (for tests and diagnostics).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (b, qs) in self.nibbles.chunks_exact(self.kind.quant_bytes()).enumerate() {
            let (d, m) = (self.scales[b], self.mins.get(b).copied().unwrap_or(0.0));
            let value = |q: u8| match self.kind {
                BlockKind::Q4_0 => (f32::from(q) - 8.0) * d,
                BlockKind::Q4_1 => f32::from(q) * d + m,
                BlockKind::Q8_0 => f32::from(i8::from_ne_bytes([q])) * d,
            };
            if self.kind == BlockKind::Q8_0 {
                out.extend(qs.iter().map(|&q| value(q)));
            } else {
                out.extend(qs.iter().map(|&q| value(q & 0x0F)));
                out.extend(qs.iter().map(|&q| value(q >> 4)));
            }
        }
        out
    }

    /// Quantizes `m` rows of `cols` activations as ggml does for this weight type.
    fn quantize_rows(&self, x: &[f32]) -> Q8Rows {
        let blocks = x.len() / QK;
        let mut q = vec![0i8; x.len()];
        let mut d = Vec::with_capacity(blocks);
        let mut s = Vec::with_capacity(if self.kind == BlockKind::Q4_1 { blocks } else { 0 });
        for (xb, qb) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if amax == 0.0 { 0.0 } else { 127.0 / amax };
            let mut sum = 0i32;
            for (v, out) in xb.iter().zip(qb.iter_mut()) {
                let r = round_ties_even(v * inv) as i8;
                sum += i32::from(r);
                *out = r;
            }
            d.push(f16::from_f32(scale).to_f32());
            if self.kind == BlockKind::Q4_1 {
                s.push(f16::from_f32(scale * sum as f32).to_f32());
            }
        }
        Q8Rows { q, d, s }
    }

    /// `x · Wᵀ` for `x` of `m` rows (`[m, cols]` row-major), into `[m, rows]`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "activation length");
        let xq = self.quantize_rows(x);
        let kernel = Kernel::detect();
        let nb = self.cols / QK;
        // Rows of W per task: enough work to amortise scheduling, enough tasks to balance.
        let per_task = (self.rows / (rayon::current_num_threads() * 4)).clamp(1, 64);
        // Transposed output `[rows, m]`, so that each task writes one contiguous range.
        let mut out_t = vec![0f32; self.rows * m];
        // Eight (then four) activation rows at a time on AVX-512 VNNI, the rest four or one
        // at a time.
        #[cfg(target_arch = "x86_64")]
        let tiles = (m >= avx512::ROWS[1] && kernel != Kernel::Scalar && avx512::available())
            .then(|| avx512::Tiles::new(&xq, nb, m));
        #[cfg(target_arch = "x86_64")]
        let tiled = tiles.as_ref().map_or(0, |t| t.covered);
        #[cfg(not(target_arch = "x86_64"))]
        let tiled = 0;
        out_t.par_chunks_mut(per_task * m).enumerate().for_each(|(task, chunk)| {
            let first = task * per_task;
            if m == 1 {
                // Decoding: one call runs the kernel over the task's rows.
                return self.rows_times_one(kernel, first, chunk, &xq, nb);
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(tiles) = &tiles {
                // Tile by tile (its rows stay in L1), over the task's weight rows two by two.
                let n = chunk.len() / m;
                for &(i0, rows) in &tiles.spans {
                    for r in (0..n).step_by(2) {
                        let (out, two) = (&mut chunk[r * m + i0..], r + 1 < n);
                        let w = self.weights().rows(first + r..first + r + if two { 2 } else { 1 }, nb);
                        // SAFETY: `avx512::available` checked the CPU; `(i0, rows)` is a span
                        // of `tiles`, and `out` holds the rows' results.
                        unsafe {
                            match (two, rows) {
                                (true, 8) => avx512::tile::<2, 4>(w, tiles, i0, out, m),
                                (false, 8) => avx512::tile::<1, 4>(w, tiles, i0, out, m),
                                (true, _) => avx512::tile::<2, 2>(w, tiles, i0, out, m),
                                (false, _) => avx512::tile::<1, 2>(w, tiles, i0, out, m),
                            }
                        }
                    }
                }
                // SAFETY: as above.
                unsafe { crate::zmm::clear_upper_state() };
            }
            for (r, row_out) in chunk.chunks_exact_mut(m).enumerate() {
                let j = first + r;
                // Four activation rows per pass over the weight row (its nibbles unpacked once).
                let full = tiled + (m - tiled) / 4 * 4;
                for i in (tiled..full).step_by(4) {
                    row_out[i..i + 4].copy_from_slice(&self.dot4(kernel, j, &xq, i, nb));
                }
                for i in full..m {
                    row_out[i] = self.dot(kernel, j, &xq, i, nb);
                }
            }
        });
        if m == 1 {
            return out_t;
        }
        // Back to `[m, rows]`, in 16 × 16 blocks (a plain strided copy costs a tenth of the
        // product), sixteen output rows per task.
        let rows = self.rows;
        let mut out = vec![0f32; m * rows];
        out.par_chunks_mut(16 * rows).enumerate().for_each(|(block, out)| {
            let i0 = block * 16;
            let n = out.len() / rows;
            for j0 in (0..rows).step_by(16) {
                for j in j0..(j0 + 16).min(rows) {
                    let src = &out_t[j * m + i0..j * m + i0 + n];
                    for (i, v) in src.iter().enumerate() {
                        out[i * rows + j] = *v;
                    }
                }
            }
        });
        out
    }

    /// Weight rows `first..first + out.len()` times the single activation row of `x`.
    fn rows_times_one(&self, kernel: Kernel, first: usize, out: &mut [f32], x: &Q8Rows, nb: usize) {
        kernel.rows(self.weights().rows(first..first + out.len(), nb), x.view(), out);
    }

    /// The product of weight row `j` with activation row `i`.
    fn dot(&self, kernel: Kernel, j: usize, x: &Q8Rows, i: usize, nb: usize) -> f32 {
        let mut out = 0f32;
        kernel.rows(self.weights().rows(j..j + 1, nb), x.view().rows(i..i + 1, nb), std::slice::from_mut(&mut out));
        out
    }

    /// Weight row `j` times activation rows `i..i + 4`.
    fn dot4(&self, kernel: Kernel, j: usize, x: &Q8Rows, i: usize, nb: usize) -> [f32; 4] {
        kernel.dot4(self.weights().rows(j..j + 1, nb), x.view().rows(i..i + 4, nb))
    }
}

/// Round half to even for |x| ≤ 2²², without a libm call: adding and subtracting 1.5·2²³
/// leaves the value rounded in the FPU's default mode (to nearest, ties to even), which is
/// what ggml's `_mm256_round_ps(_, _MM_ROUND_NEAREST)` does.
#[inline]
fn round_ties_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// One weight row times one activation row, the block products in plain Rust: the reference
/// the SIMD kernels are tested against.
fn dot_scalar(w: WeightRows<'_>, x: ActRows<'_>) -> f32 {
    let WeightRows { kind, q: wq, d: wd, m: wm } = w;
    let ActRows { q: xq, d: xd, s: xs } = x;
    let mut acc = 0f32;
    let mut mins = 0f32;
    for b in 0..wd.len() {
        let mut sum = 0i32;
        if kind == BlockKind::Q8_0 {
            for k in 0..QK {
                sum += i32::from(i8::from_ne_bytes([wq[b * QK + k]])) * i32::from(xq[b * QK + k]);
            }
            acc += wd[b] * xd[b] * sum as f32;
            continue;
        }
        for k in 0..16 {
            let byte = wq[b * 16 + k];
            let (lo, hi) = (i32::from(byte & 0x0F), i32::from(byte >> 4));
            let (lo, hi) = if kind == BlockKind::Q4_0 { (lo - 8, hi - 8) } else { (lo, hi) };
            sum += lo * i32::from(xq[b * QK + k]) + hi * i32::from(xq[b * QK + 16 + k]);
        }
        acc += wd[b] * xd[b] * sum as f32;
        if kind == BlockKind::Q4_1 {
            mins += wm[b] * xs[b];
        }
    }
    acc + mins
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("LONGCTX_SCALAR_KERNELS").is_some() {
                return Kernel::Scalar;
            }
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avxvnni") {
                return Kernel::AvxVnni;
            }
            if avx2 {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// The weight rows `w` times the single activation row `x`, one output per row.
    fn rows(self, w: WeightRows<'_>, x: ActRows<'_>, out: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::detect` chose these only where the CPU has the features.
            Kernel::Avx2 => unsafe { x86::avx2::rows(w, x, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::AvxVnni => unsafe { x86::vnni::rows(w, x, out) },
            Kernel::Scalar => {
                let nb = x.d.len();
                for (r, slot) in out.iter_mut().enumerate() {
                    *slot = dot_scalar(w.rows(r..r + 1, nb), x);
                }
            }
        }
    }

    /// The single weight row `w` times the four activation rows `x`.
    fn dot4(self, w: WeightRows<'_>, x: ActRows<'_>) -> [f32; 4] {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::detect` chose these only where the CPU has the features.
            Kernel::Avx2 => unsafe { x86::avx2::dot4(w, x) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::AvxVnni => unsafe { x86::vnni::dot4(w, x) },
            Kernel::Scalar => {
                let nb = w.d.len();
                std::array::from_fn(|r| dot_scalar(w, x.rows(r..r + 1, nb)))
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
// The SIMD helpers must inline into the `target_feature` functions that call them.
#[allow(clippy::inline_always)]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m256i, _mm256_castps256_ps128, _mm256_cvtepi32_ps, _mm256_dpbusd_avx_epi32, _mm256_extractf128_ps,
        _mm256_fmadd_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_set1_epi16,
        _mm256_set1_ps, _mm256_set_m128i, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_sign_epi8, _mm_add_ps,
        _mm_add_ss, _mm_and_si128, _mm_cvtss_f32, _mm_loadu_si128, _mm_movehdup_ps, _mm_movehl_ps, _mm_set1_epi8,
        _mm_srli_epi16, _mm_sub_epi8,
    };

    use super::{ActRows, BlockKind, WeightRows, QK};

    /// `Σ u8 · i8` over 32 lanes into 8 i32 sums: AVX-VNNI's `vpdpbusd`, or AVX2's
    /// `maddubs` + `madd` (no saturation: |u8| ≤ 15 here, so pair sums stay below 2¹⁵).
    #[inline(always)]
    unsafe fn sum_u8_i8<const VNNI: bool>(u: __m256i, s: __m256i) -> __m256i {
        if VNNI {
            _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
        }
    }

    /// The 32 weights of block `b`: Q4_1's `q` (0..16, as u8), Q4_0's `q - 8` and Q8_0's `q`
    /// (as i8).
    #[inline(always)]
    unsafe fn weights(kind: BlockKind, wq: &[u8], b: usize) -> __m256i {
        if kind == BlockKind::Q8_0 {
            return _mm256_loadu_si256(wq.as_ptr().add(b * 32).cast());
        }
        let mask = _mm_set1_epi8(0x0F);
        let bytes = _mm_loadu_si128(wq.as_ptr().add(b * 16).cast());
        let lo = _mm_and_si128(bytes, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
        if kind == BlockKind::Q4_1 {
            _mm256_set_m128i(hi, lo)
        } else {
            let eight = _mm_set1_epi8(8);
            _mm256_set_m128i(_mm_sub_epi8(hi, eight), _mm_sub_epi8(lo, eight))
        }
    }

    #[inline(always)]
    pub(super) unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Emits module `$module` with the entry points [`rows`] and [`body4`] compiled for
    /// `$features` (`$vnni`: whether these include AVX-VNNI).
    macro_rules! entry_points {
        ($(#[$doc:meta])* $module:ident, $features:literal, $vnni:literal) => {
            $(#[$doc])*
            pub(super) mod $module {
                use super::{ActRows, WeightRows};

                /// [`super::rows`] compiled for these features.
                ///
                /// # Safety
                /// The CPU must have them.
                #[target_feature(enable = $features)]
                pub(crate) unsafe fn rows(w: WeightRows<'_>, x: ActRows<'_>, out: &mut [f32]) {
                    super::rows::<$vnni>(w, x, out);
                }

                /// [`super::body4`] compiled for these features.
                ///
                /// # Safety
                /// The CPU must have them.
                #[target_feature(enable = $features)]
                pub(crate) unsafe fn dot4(w: WeightRows<'_>, x: ActRows<'_>) -> [f32; 4] {
                    super::body4::<$vnni>(w, x)
                }
            }
        };
    }

    entry_points!(
        /// The kernels compiled for AVX2 + FMA.
        avx2,
        "avx2,fma",
        false
    );
    entry_points!(
        /// The kernels compiled for AVX2 + FMA + AVX-VNNI.
        vnni,
        "avx2,fma,avxvnni",
        true
    );

    /// [`body`] over the weight rows `w` (`w.d.len() / nb` of them) and the one activation row
    /// `x`, one output per weight row.
    #[inline(always)]
    unsafe fn rows<const VNNI: bool>(w: WeightRows<'_>, x: ActRows<'_>, out: &mut [f32]) {
        let nb = x.d.len();
        for (r, slot) in out.iter_mut().enumerate() {
            *slot = body::<VNNI>(w.rows(r..r + 1, nb), x);
        }
    }

    /// One weight row `w` times four consecutive activation rows `x`, each accumulated exactly
    /// as [`body`] accumulates one.
    #[inline(always)]
    unsafe fn body4<const VNNI: bool>(w: WeightRows<'_>, x: ActRows<'_>) -> [f32; 4] {
        let WeightRows { kind, q: wq, d: wd, m: wm } = w;
        let ActRows { q: xq, d: xd, s: xs } = x;
        let nb = wd.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = [0f32; 4];
        for b in 0..nb {
            let w = weights(kind, wq, b);
            let w_abs = _mm256_sign_epi8(w, w);
            for r in 0..4 {
                let x = _mm256_loadu_si256(xq.as_ptr().add((r * nb + b) * QK).cast());
                let sums = match kind {
                    BlockKind::Q4_1 => sum_u8_i8::<VNNI>(w, x),
                    BlockKind::Q4_0 | BlockKind::Q8_0 => sum_u8_i8::<VNNI>(w_abs, _mm256_sign_epi8(x, w)),
                };
                let scale = _mm256_set1_ps(wd[b] * xd[r * nb + b]);
                acc[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[r]);
                if kind == BlockKind::Q4_1 {
                    mins[r] += wm[b] * xs[r * nb + b];
                }
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) + mins[r])
    }

    /// One weight row `w` times one activation row `x`, block by block as ggml's x86 kernels do.
    #[inline(always)]
    unsafe fn body<const VNNI: bool>(w: WeightRows<'_>, x: ActRows<'_>) -> f32 {
        let WeightRows { kind, q: wq, d: wd, m: wm } = w;
        let ActRows { q: xq, d: xd, s: xs } = x;
        let nb = wd.len();
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        for b in 0..nb {
            let w = weights(kind, wq, b);
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK).cast());
            let sums = match kind {
                BlockKind::Q4_1 => sum_u8_i8::<VNNI>(w, x),
                // Signed weights: multiply |w| by x carrying w's sign.
                BlockKind::Q4_0 | BlockKind::Q8_0 => sum_u8_i8::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)),
            };
            acc = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * xd[b]), _mm256_cvtepi32_ps(sums), acc);
            if kind == BlockKind::Q4_1 {
                mins += wm[b] * xs[b];
            }
        }
        hsum(acc) + mins
    }
}

/// [`QuantMatrix::matmul`] as a candle op on f32 activations `[..., cols]` → `[..., rows]`,
/// and how it runs ([`Products`]).
pub struct QuantMatMul(pub std::sync::Arc<QuantMatrix>, pub Products);

/// How a [`QuantMatMul`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Products {
    /// llama.cpp's products: 8-bit activations, integer block sums (inference).
    #[default]
    Quantized,
    /// `x · Ŵᵀ` in f32 with the weights dequantized for each product and dropped after it,
    /// differentiable in `x` (training over a frozen quantized base: QLoRA, as bitsandbytes
    /// computes it).
    Dequantized,
}

impl CustomOp1 for QuantMatMul {
    fn name(&self) -> &'static str {
        "q4-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("q4-matmul takes f32 activations");
        };
        let dims = layout.shape().dims();
        let (&cols, batch) =
            dims.split_last().ok_or_else(|| candle_core::Error::Msg("q4-matmul on a scalar".into()))?;
        if cols != self.0.cols {
            candle_core::bail!("q4-matmul: activations have {cols} columns, the weights {}", self.0.cols);
        }
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &data[start..end],
            None => candle_core::bail!("q4-matmul takes contiguous activations"),
        };
        let m = batch.iter().product();
        let mut out_dims = batch.to_vec();
        out_dims.push(self.0.rows);
        Ok((CpuStorage::F32(self.0.matmul(x, m)), Shape::from(out_dims)))
    }
}

impl QuantMatMul {
    /// The product of `matrix` with llama.cpp's quantized products.
    pub fn new(matrix: std::sync::Arc<QuantMatrix>) -> Self {
        Self(matrix, Products::Quantized)
    }

    /// Applies the product to `x`, as [`Products`] says; dequantized whenever `x` is being
    /// differentiated (its backward pass gives `x` the gradient `g · Ŵ`; the weights stay
    /// frozen).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.1 == Products::Dequantized || x.track_op() {
            let w = crate::frozen::Frozen::Quant(std::sync::Arc::clone(&self.0));
            return crate::frozen::frozen_product(&w, None, x);
        }
        x.contiguous()?.apply_op1_no_bwd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix in GGML block layout.
    fn random_blocks(kind: BlockKind, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let mut out = Vec::new();
        for _ in 0..rows * cols / QK {
            out.extend(f16::from_f32((next() % 1000) as f32 / 20_000.0 + 0.001).to_le_bytes());
            if kind == BlockKind::Q4_1 {
                out.extend(f16::from_f32(-((next() % 1000) as f32) / 10_000.0).to_le_bytes());
            }
            out.extend((0..16).map(|_| (next() & 0xFF) as u8));
        }
        out
    }

    #[test]
    fn kernels_agree_with_the_scalar_reference_and_dense_product() {
        for (kind, m) in [(BlockKind::Q4_0, 1), (BlockKind::Q4_0, 5), (BlockKind::Q4_1, 1), (BlockKind::Q4_1, 5)] {
            let (rows, cols) = (37, 96);
            let w = QuantMatrix::from_ggml(kind, rows, cols, &random_blocks(kind, rows, cols, 7)).unwrap();
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let got = w.matmul(&x, m);
            let xq = w.quantize_rows(&x);
            let dense = w.dequantize();
            for i in 0..m {
                for j in 0..rows {
                    let nb = cols / QK;
                    let reference = w.dot(Kernel::Scalar, j, &xq, i, nb);
                    let g = got[i * rows + j];
                    assert!(
                        (g - reference).abs() <= 1e-5 * reference.abs().max(1.0),
                        "{kind:?} {i},{j}: {g} vs {reference}"
                    );
                    // Against the unquantized-activation product: only the 8-bit rounding differs.
                    let exact: f32 = (0..cols).map(|k| dense[j * cols + k] * x[i * cols + k]).sum();
                    let scale: f32 = (0..cols).map(|k| (dense[j * cols + k] * x[i * cols + k]).abs()).sum();
                    assert!((g - exact).abs() <= 0.02 * scale, "{kind:?} {i},{j}: {g} vs dense {exact}");
                }
            }
        }
    }

    /// Every SIMD kernel this CPU has (not only the one `detect` picks), one and four rows at
    /// a time, against the scalar reference.
    #[test]
    fn every_available_kernel_agrees_with_scalar() {
        let mut kernels = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                kernels.push(Kernel::Avx2);
                if is_x86_feature_detected!("avxvnni") {
                    kernels.push(Kernel::AvxVnni);
                }
            }
        }
        for kind in [BlockKind::Q4_0, BlockKind::Q4_1] {
            let (rows, cols, m) = (9, 160, 8);
            let w = QuantMatrix::from_ggml(kind, rows, cols, &random_blocks(kind, rows, cols, 3)).unwrap();
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0).collect();
            let xq = w.quantize_rows(&x);
            let nb = cols / QK;
            for &kernel in &kernels {
                for j in 0..rows {
                    for i in (0..m).step_by(4) {
                        let four = w.dot4(kernel, j, &xq, i, nb);
                        for r in 0..4 {
                            let want = w.dot(Kernel::Scalar, j, &xq, i + r, nb);
                            let one = w.dot(kernel, j, &xq, i + r, nb);
                            for got in [one, four[r]] {
                                assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{kernel:?} {kind:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The products of many rows (the AVX-512 tiles where the CPU has them, the 256-bit
    /// kernels for the rest) are bit for bit those of each row alone, for every kind, an odd
    /// number of weight rows and row counts around the tile size.
    #[test]
    fn many_rows_equal_each_row_alone_bit_for_bit() {
        for kind in [BlockKind::Q4_0, BlockKind::Q4_1, BlockKind::Q8_0] {
            // One thread: 16 weight rows per task, so the tiles run two rows and one row at a time.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let (rows, cols) = (67, 96);
            let data = if kind == BlockKind::Q8_0 {
                let mut state = 5u64;
                (0..rows * cols / QK)
                    .flat_map(|_| {
                        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let d = f16::from_f32(((state >> 40) % 1000) as f32 / 20_000.0 + 0.001).to_le_bytes();
                        let qs: Vec<u8> = (0..QK)
                            .map(|k| {
                                // -128 included.
                                (state >> (k % 56)) as u8
                            })
                            .collect();
                        d.into_iter().chain(qs)
                    })
                    .collect()
            } else {
                random_blocks(kind, rows, cols, 11)
            };
            let w = QuantMatrix::from_ggml(kind, rows, cols, &data).unwrap();
            for m in [2, 4, 5, 7, 8, 9, 12, 17, 35] {
                let x: Vec<f32> = (0..m * cols).map(|i| ((i * 61 % 113) as f32 - 56.0) / 7.0).collect();
                let together = pool.install(|| w.matmul(&x, m));
                for i in 0..m {
                    let alone = w.matmul(&x[i * cols..(i + 1) * cols], 1);
                    for j in 0..rows {
                        assert_eq!(
                            together[i * rows + j].to_bits(),
                            alone[j].to_bits(),
                            "{kind:?} m {m} row {i} col {j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn activation_quantization_rounds_like_ggml() {
        let w = QuantMatrix::from_ggml(BlockKind::Q4_1, 1, 32, &random_blocks(BlockKind::Q4_1, 1, 32, 1)).unwrap();
        // amax 127: the scale is 1 and halves round to even.
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 0.5;
        let q = w.quantize_rows(&x);
        assert_eq!(&q.q[..4], &[127, 2, -4, 0]);
        assert_eq!(q.d, vec![1.0]);
        assert_eq!(q.s, vec![125.0]);
        // All zeros: scale 0, no NaN.
        let q = w.quantize_rows(&[0.0; 32]);
        assert_eq!(q.d, vec![0.0]);
        assert!(q.q.iter().all(|&v| v == 0));
    }
}
