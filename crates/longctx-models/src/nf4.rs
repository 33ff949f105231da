//! NF4 (QLoRA's 4-bit NormalFloat) quantization, byte for byte as bitsandbytes 0.48.2 does it
//! on the CPU (`bitsandbytes.functional.quantize_4bit(quant_type="nf4")` /
//! `dequantize_4bit`), with its double quantization of the scales (`compress_statistics=True`,
//! the default of QLoRA's `Linear4bit`).
//!
//! Single-level NF4, per block of `blocksize` values (64 by default; the last block may be
//! shorter and has its own scale, as in bitsandbytes):
//! - `absmax` is the largest `|x|` of the block (NaN if the block holds a NaN);
//! - each value is scaled as `s = clamp(x * (1 / absmax), -1, 1)` in f32 (a multiplication by
//!   the f32 reciprocal, not a division);
//! - its code is the index of the nearest entry of [`NF4_CODES`], the distance `|s - c|` being
//!   computed in f32; on equal distances the lower index wins (torch's `argmin`), and a NaN
//!   `s` (an all-zero block: `0 * inf`) gets code 0, so that block dequantizes to `-0.0`;
//! - two codes per byte, the first (even-indexed) value in the high nibble;
//! - dequantization is `NF4_CODES[code] * absmax` in f32.
//!
//! Double quantization replaces the f32 `absmax` vector by 8-bit codes
//! ([`double_quantize`]): `offset = absmax.mean()` (torch's float32 mean, reproduced by
//! [`torch_mean`]), then bitsandbytes' blockwise 8-bit quantizer ([`quantize_blockwise`],
//! blocks of [`DOUBLE_QUANT_BLOCKSIZE`]) on `absmax - offset`: per block a scale `absmax2 =
//! max |d|`, each `d / absmax2` (a division) mapped to the nearest entry of
//! [`DYNAMIC_CODES`], the lower one on equal f32 distances. The scales come back as
//! `DYNAMIC_CODES[q] * absmax2 + offset` in f32.
//!
//! Where bitsandbytes has no defined result, this module chooses one: an odd number of values
//! (bitsandbytes' packing fails or mis-packs them) is an error, and a second-level block whose
//! `absmax - offset` values are all zero (for instance a tensor of a single 4-bit block, where
//! bitsandbytes' CPU kernel divides 0 by 0 and then crashes) gets the code of `0.0`, which
//! restores `offset` exactly.
//!
//! ```
//! use longctx_models::nf4::{quantize, NF4_CODES};
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
//! let q = quantize(&x, 64).unwrap();
//! assert_eq!(q.absmax, vec![4.0]);
//! assert_eq!(q.codes[0], 0x00); // -4.0 and -3.875 both map to code 0 (-1.0)
//! assert_eq!(q.dequantize()[0], NF4_CODES[0] * 4.0);
//! let d = longctx_models::nf4::quantize_double(&x, 64).unwrap();
//! assert_eq!(d.codes, q.codes);
//! ```

/// bitsandbytes' NF4 table (`get_4bit_type("nf4")`): the 16 code values, in f32.
#[rustfmt::skip]
#[allow(clippy::unreadable_literal)]
pub const NF4_CODES: [f32; 16] = [
    -1.0, -0.6961928, -0.52507305, -0.3949175, -0.28444138, -0.18477343, -0.091050036, 0.0,
    0.0795803, 0.1609302, 0.2461123, 0.33791524, 0.44070983, 0.562617, 0.72295684, 1.0,
];

/// bitsandbytes' signed 8-bit dynamic code (`create_dynamic_map()`), as its CPU quantizer leaves
/// it: entry 0 set to `-1.0` (it is -0.99297 as created), which `dequantize_blockwise` then
/// uses too. Sorted; entry 127 is `0.0`, entry 255 is `1.0`.
#[rustfmt::skip]
#[allow(clippy::unreadable_literal)]
pub const DYNAMIC_CODES: [f32; 256] = [
    -1.0, -0.9789063, -0.96484375, -0.9507812, -0.93671876, -0.92265624, -0.9085938, -0.89453125,
    -0.8804687, -0.86640626, -0.85234374, -0.8382813, -0.82421875, -0.8101562, -0.79609376, -0.78203124,
    -0.7679688, -0.75390625, -0.7398437, -0.72578126, -0.7117188, -0.6976563, -0.68359375, -0.6695312,
    -0.65546876, -0.6414063, -0.6273438, -0.61328125, -0.5992187, -0.58515626, -0.5710938, -0.5570313,
    -0.54296875, -0.5289062, -0.5148437, -0.50078124, -0.4867187, -0.47265625, -0.45859373, -0.44453126,
    -0.43046874, -0.41640624, -0.40234375, -0.38828123, -0.37421876, -0.36015624, -0.34609374, -0.33203125,
    -0.31796873, -0.30390626, -0.28984374, -0.27578127, -0.26171875, -0.24765624, -0.23359375, -0.21953125,
    -0.20546874, -0.19140625, -0.17734376, -0.16328125, -0.14921875, -0.13515624, -0.12109375, -0.107031256,
    -0.09859375, -0.09578126, -0.092968754, -0.09015625, -0.08734375, -0.08453125, -0.08171876, -0.07890625,
    -0.07609375, -0.07328125, -0.070468746, -0.067656256, -0.06484375, -0.06203125, -0.059218753, -0.05640625,
    -0.05359375, -0.05078125, -0.04796875, -0.04515625, -0.042343747, -0.03953125, -0.036718752, -0.03390625,
    -0.03109375, -0.028281251, -0.02546875, -0.02265625, -0.019843752, -0.01703125, -0.01421875, -0.01140625,
    -0.00971875, -0.009156249, -0.00859375, -0.00803125, -0.00746875, -0.00690625, -0.00634375, -0.00578125,
    -0.0052187503, -0.0046562497, -0.00409375, -0.0035312497, -0.00296875, -0.00240625, -0.00184375, -0.0012812499,
    -0.0009437501, -0.00083125, -0.00071875006, -0.0006062501, -0.00049375003, -0.00038125002, -0.00026875004, -0.00015625001,
    -8.875e-05, -6.625e-05, -4.375e-05, -2.1249998e-05, -7.75e-06, -3.2500002e-06, -5.5000004e-07, 0.0,
    5.5000004e-07, 3.2500002e-06, 7.75e-06, 2.1249998e-05, 4.375e-05, 6.625e-05, 8.875e-05, 0.00015625001,
    0.00026875004, 0.00038125002, 0.00049375003, 0.0006062501, 0.00071875006, 0.00083125, 0.0009437501, 0.0012812499,
    0.00184375, 0.00240625, 0.00296875, 0.0035312497, 0.00409375, 0.0046562497, 0.0052187503, 0.00578125,
    0.00634375, 0.00690625, 0.00746875, 0.00803125, 0.00859375, 0.009156249, 0.00971875, 0.01140625,
    0.01421875, 0.01703125, 0.019843752, 0.02265625, 0.02546875, 0.028281251, 0.03109375, 0.03390625,
    0.036718752, 0.03953125, 0.042343747, 0.04515625, 0.04796875, 0.05078125, 0.05359375, 0.05640625,
    0.059218753, 0.06203125, 0.06484375, 0.067656256, 0.070468746, 0.07328125, 0.07609375, 0.07890625,
    0.08171876, 0.08453125, 0.08734375, 0.09015625, 0.092968754, 0.09578126, 0.09859375, 0.107031256,
    0.12109375, 0.13515624, 0.14921875, 0.16328125, 0.17734376, 0.19140625, 0.20546874, 0.21953125,
    0.23359375, 0.24765624, 0.26171875, 0.27578127, 0.28984374, 0.30390626, 0.31796873, 0.33203125,
    0.34609374, 0.36015624, 0.37421876, 0.38828123, 0.40234375, 0.41640624, 0.43046874, 0.44453126,
    0.45859373, 0.47265625, 0.4867187, 0.50078124, 0.5148437, 0.5289062, 0.54296875, 0.5570313,
    0.5710938, 0.58515626, 0.5992187, 0.61328125, 0.6273438, 0.6414063, 0.65546876, 0.6695312,
    0.68359375, 0.6976563, 0.7117188, 0.72578126, 0.7398437, 0.75390625, 0.7679688, 0.78203124,
    0.79609376, 0.8101562, 0.82421875, 0.8382813, 0.85234374, 0.86640626, 0.8804687, 0.89453125,
    0.9085938, 0.92265624, 0.93671876, 0.9507812, 0.96484375, 0.9789063, 0.99296874, 1.0,
];

/// bitsandbytes' default NF4 blocksize (on CUDA and CPU; 128 on ROCm).
pub const DEFAULT_BLOCKSIZE: usize = 64;

/// The blocksize of the second-level (8-bit) quantization of the scales.
pub const DOUBLE_QUANT_BLOCKSIZE: usize = 256;

/// The index of `0.0` in [`DYNAMIC_CODES`].
const DYNAMIC_ZERO: u8 = 127;

/// Inputs that NF4 quantization does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nf4Error {
    /// A blocksize of zero.
    #[error("the blocksize must be positive")]
    ZeroBlocksize,
    /// An odd number of values (two 4-bit codes are packed per byte).
    #[error("{0} values: NF4 packs two values per byte, the count must be even")]
    OddLength(usize),
}

/// Values quantized to NF4: bitsandbytes' packed codes and per-block scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4 {
    /// Values per block (the last block may be shorter).
    pub blocksize: usize,
    /// Two codes per byte, the first value of each pair in the high nibble (bitsandbytes'
    /// `quantize_4bit` output, `uint8` storage).
    pub codes: Vec<u8>,
    /// The largest `|x|` of each block.
    pub absmax: Vec<f32>,
}

/// Values quantized to NF4 with double-quantized scales (`compress_statistics=True`).
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Double {
    /// Values per block (the last block may be shorter).
    pub blocksize: usize,
    /// The packed 4-bit codes, as in [`Nf4::codes`].
    pub codes: Vec<u8>,
    /// The scales, quantized to 8 bits.
    pub absmax: DoubleQuantAbsmax,
}

/// Values quantized by bitsandbytes' blockwise 8-bit dynamic quantizer (`quantize_blockwise`
/// with its default code, CPU kernel).
#[derive(Debug, Clone, PartialEq)]
pub struct Blockwise {
    /// Values per block (the last block may be shorter).
    pub blocksize: usize,
    /// One index into [`DYNAMIC_CODES`] per value.
    pub codes: Vec<u8>,
    /// The largest `|x|` of each block.
    pub absmax: Vec<f32>,
}

/// NF4 scales double-quantized: `absmax - offset` quantized blockwise to 8 bits (bitsandbytes'
/// `QuantState.absmax`, `.state2` and `.offset`).
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuantAbsmax {
    /// `absmax - offset`, quantized in blocks of [`DOUBLE_QUANT_BLOCKSIZE`].
    pub quantized: Blockwise,
    /// The mean of the scales.
    pub offset: f32,
}

/// `values` quantized to NF4 in blocks of `blocksize`, as bitsandbytes'
/// `quantize_4bit(values, blocksize=blocksize, quant_type="nf4")` on a float32 tensor (values in
/// row-major order). A last block shorter than `blocksize` has its own scale.
pub fn quantize(values: &[f32], blocksize: usize) -> Result<Nf4, Nf4Error> {
    if blocksize == 0 {
        return Err(Nf4Error::ZeroBlocksize);
    }
    if !values.len().is_multiple_of(2) {
        return Err(Nf4Error::OddLength(values.len()));
    }
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    let mut nibbles = Vec::with_capacity(values.len());
    for block in values.chunks(blocksize) {
        // torch's `max` propagates NaN.
        let m = block.iter().fold(0f32, |m, x| if m.is_nan() || x.is_nan() { f32::NAN } else { m.max(x.abs()) });
        let inverse = 1.0 / m;
        nibbles.extend(block.iter().map(|&x| nearest_nf4(x * inverse)));
        absmax.push(m);
    }
    let codes = nibbles.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
    Ok(Nf4 { blocksize, codes, absmax })
}

/// `quantize` followed by [`double_quantize`] of the scales: bitsandbytes'
/// `quantize_4bit(..., quant_type="nf4", compress_statistics=True)`.
pub fn quantize_double(values: &[f32], blocksize: usize) -> Result<Nf4Double, Nf4Error> {
    let q = quantize(values, blocksize)?;
    Ok(Nf4Double { blocksize, absmax: double_quantize(&q.absmax), codes: q.codes })
}

/// The index of the NF4 code nearest to `x * (1 / absmax)`: torch's
/// `argmin(|clamp(s, -1, 1) - code|)`, the first index on equal distances and 0 for NaN.
fn nearest_nf4(s: f32) -> u8 {
    if s.is_nan() {
        return 0;
    }
    let s = s.clamp(-1.0, 1.0);
    let mut best = 0;
    let mut best_distance = (s - NF4_CODES[0]).abs();
    for (i, &c) in NF4_CODES.iter().enumerate().skip(1) {
        let distance = (s - c).abs();
        if distance < best_distance {
            best = i;
            best_distance = distance;
        }
    }
    best as u8
}

/// `NF4_CODES[code] * absmax[block]` for each value, in f32.
fn dequantize_nf4(codes: &[u8], absmax: &[f32], blocksize: usize) -> Vec<f32> {
    codes
        .iter()
        .flat_map(|&b| [b >> 4, b & 0x0f])
        .enumerate()
        .map(|(i, code)| NF4_CODES[usize::from(code)] * absmax[i / blocksize])
        .collect()
}

impl Nf4 {
    /// The number of values.
    pub fn len(&self) -> usize {
        2 * self.codes.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The values back: bitsandbytes' `dequantize_4bit` (float32).
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize_nf4(&self.codes, &self.absmax, self.blocksize)
    }
}

impl Nf4Double {
    /// The number of values.
    pub fn len(&self) -> usize {
        2 * self.codes.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The scales as dequantization sees them ([`DoubleQuantAbsmax::dequantize`]).
    pub fn absmax(&self) -> Vec<f32> {
        self.absmax.dequantize()
    }

    /// The values back: bitsandbytes' `dequantize_4bit` of a nested quantization state.
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize_nf4(&self.codes, &self.absmax(), self.blocksize)
    }
}

/// A weight matrix `[rows, cols]` stored as QLoRA stores it: NF4 codes in blocks of 64 over
/// the row-major values, the scales double-quantized (bitsandbytes' `Linear4bit` defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Matrix {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The quantized values.
    pub weights: Nf4Double,
}

impl Nf4Matrix {
    /// Quantizes `values` (`rows × cols`, row-major).
    pub fn quantize(rows: usize, cols: usize, values: &[f32]) -> Result<Self, Nf4Error> {
        Ok(Self { rows, cols, weights: quantize_double(values, DEFAULT_BLOCKSIZE)? })
    }

    /// The weights as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.weights.dequantize()
    }

    /// Bytes stored: the codes, the 8-bit scales and their f32 scales.
    pub fn bytes(&self) -> usize {
        let scales = &self.weights.absmax.quantized;
        self.weights.codes.len() + scales.codes.len() + 4 * scales.absmax.len() + 4
    }
}

/// bitsandbytes' blockwise 8-bit quantization with its dynamic code (`quantize_blockwise`,
/// float32 on the CPU kernel): per block `absmax = max |x|`, each `x / absmax` (a division)
/// mapped to the nearest entry of [`DYNAMIC_CODES`], the lower index on equal f32 distances.
/// A block that is all zeros (`0 / 0`, undefined behaviour in bitsandbytes) gets the index of
/// `0.0`.
pub fn quantize_blockwise(values: &[f32], blocksize: usize) -> Result<Blockwise, Nf4Error> {
    if blocksize == 0 {
        return Err(Nf4Error::ZeroBlocksize);
    }
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    let mut codes = Vec::with_capacity(values.len());
    for block in values.chunks(blocksize) {
        // C's `fmax`, which ignores NaN, from -FLT_MAX.
        let m = block.iter().fold(-f32::MAX, |m, x| m.max(x.abs()));
        codes.extend(block.iter().map(|&x| nearest_dynamic(x / m)));
        absmax.push(m);
    }
    Ok(Blockwise { blocksize, codes, absmax })
}

/// The CPU kernel's search: the last code not above `z` (its binary search), then the next one
/// if that is strictly nearer in f32.
fn nearest_dynamic(z: f32) -> u8 {
    if z.is_nan() {
        return DYNAMIC_ZERO;
    }
    let mut i = DYNAMIC_CODES.partition_point(|&c| c <= z).saturating_sub(1);
    if i < 255 && (z - DYNAMIC_CODES[i + 1]).abs() < (z - DYNAMIC_CODES[i]).abs() {
        i += 1;
    }
    i as u8
}

impl Blockwise {
    /// The values back: `DYNAMIC_CODES[code] * absmax[block]` in f32 (`dequantize_blockwise`).
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &q)| DYNAMIC_CODES[usize::from(q)] * self.absmax[i / self.blocksize])
            .collect()
    }
}

/// NF4 scales double-quantized as `quantize_4bit(compress_statistics=True)` does:
/// `offset = torch_mean(absmax)`, then [`quantize_blockwise`] of `absmax - offset` in blocks of
/// [`DOUBLE_QUANT_BLOCKSIZE`].
pub fn double_quantize(absmax: &[f32]) -> DoubleQuantAbsmax {
    double_quantize_with_offset(absmax, torch_mean(absmax))
}

/// [`double_quantize`] with a given offset (for instance one that torch computed with several
/// threads, see [`torch_mean`]).
pub fn double_quantize_with_offset(absmax: &[f32], offset: f32) -> DoubleQuantAbsmax {
    let centred: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
    let quantized = quantize_blockwise(&centred, DOUBLE_QUANT_BLOCKSIZE).expect("positive blocksize");
    DoubleQuantAbsmax { quantized, offset }
}

impl DoubleQuantAbsmax {
    /// The scales back, as `dequantize_4bit` restores them from a nested state:
    /// `dequantize_blockwise(...) + offset` in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        self.quantized.dequantize().into_iter().map(|a| a + self.offset).collect()
    }
}

/// torch's float32 `mean()` of a contiguous CPU vector, bit for bit: its cascade sum
/// (`SumKernel.cpp`: 8-lane vectors, 4 accumulators interleaved, 4 levels of partial sums)
/// divided by the length in f32. It equals torch's whenever torch sums in one thread, which it
/// does for up to 32768 values (above that, torch splits the sum over its threads and the last
/// bits depend on their number). NaN for no values.
pub fn torch_mean(values: &[f32]) -> f32 {
    torch_sum(values) / values.len() as f32
}

/// Lanes of torch's `Vectorized<float>` in its sum kernel (AVX2's 8 on x86, also where the CPU
/// has AVX-512).
const SUM_LANES: usize = 8;

/// torch's float32 `sum()` of a contiguous CPU vector, bit for bit where it sums in one thread
/// (see [`torch_mean`]).
pub fn torch_sum(values: &[f32]) -> f32 {
    let n = values.len();
    if n < SUM_LANES {
        return row_sum(n, |i| values[i]);
    }
    // `vectorized_inner_sum`: each lane sums its strided column, then the tail and the lanes
    // are added in order.
    let vectors = n / SUM_LANES;
    let mut total = 0f32;
    for &v in &values[vectors * SUM_LANES..] {
        total += v;
    }
    for lane in 0..SUM_LANES {
        total += row_sum(vectors, |j| values[j * SUM_LANES + lane]);
    }
    total
}

/// torch's `row_sum`: four interleaved accumulators (`multi_row_sum` over rows of 4), the
/// remainder added to the first, then the four added in order.
fn row_sum(size: usize, item: impl Fn(usize) -> f32) -> f32 {
    let rows = size / 4;
    let mut partial = multi_row_sum(rows, |i| [item(4 * i), item(4 * i + 1), item(4 * i + 2), item(4 * i + 3)]);
    for i in rows * 4..size {
        partial[0] += item(i);
    }
    partial[1..].iter().fold(partial[0], |s, p| s + p)
}

/// torch's `multi_row_sum` for 4 columns: chunks of `2^level_power` rows summed into level 0,
/// carried up through 4 levels of accumulators.
fn multi_row_sum(size: usize, row: impl Fn(usize) -> [f32; 4]) -> [f32; 4] {
    const LEVELS: usize = 4;
    // `CeilLog2` (1 for sizes up to 2).
    let ceil_log2 = if size <= 2 { 1 } else { usize::BITS - (size - 1).leading_zeros() };
    let level_power = (ceil_log2 / LEVELS as u32).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[0f32; 4]; LEVELS];
    let add = |acc: &mut [f32; 4], r: [f32; 4]| {
        for (a, v) in acc.iter_mut().zip(r) {
            *a += v;
        }
    };
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            add(&mut acc[0], row(i));
            i += 1;
        }
        for j in 1..LEVELS {
            let lower = std::mem::take(&mut acc[j - 1]);
            add(&mut acc[j], lower);
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    for k in i..size {
        add(&mut acc[0], row(k));
    }
    for j in 1..LEVELS {
        let upper = acc[j];
        add(&mut acc[0], upper);
    }
    acc[0]
}
