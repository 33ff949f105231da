//! Quantization of f32 weights into GGUF's Q8_0, Q4_0 and Q4_1 blocks, byte for byte as
//! llama.cpp's reference quantizer writes them (`quantize_row_*_ref` in ggml-quants.c, and
//! gguf-py's `gguf.quants.quantize`, which reproduces it): 32 values per block along a row,
//! the scale (and Q4_1's minimum) stored as f16.
//!
//! - Q8_0: `d = amax / 127`, `q = round(x / d)` (half away from zero).
//! - Q4_0: `d = x_amax / -8` (the signed value of largest magnitude, the first one on ties),
//!   `q = min(15, trunc(x / d + 8.5))` with the product and sum in one rounding (llama.cpp's
//!   compilers fuse them; gguf-py computes them in f64 to match).
//! - Q4_1: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - m) / d + 0.5))`.
//!
//! Everywhere `1 / d` is 0 when `d` is 0 and the division is a multiplication by `1 / d` in
//! f32, as in the reference.

use half::f16;

use crate::qmatmul::BlockKind;

/// Values per block.
const QK: usize = 32;

/// `x` (a whole number of 32-value blocks, row after row) as GGUF blocks of `kind`.
///
/// # Panics
/// When `x.len()` is not a multiple of 32.
pub fn quantize(kind: BlockKind, x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(QK), "{} values: not a whole number of {QK}-value blocks", x.len());
    let mut out = Vec::with_capacity(x.len() / QK * kind.block_bytes());
    for block in x.chunks_exact(QK) {
        match kind {
            BlockKind::Q8_0 => q8_0(block, &mut out),
            BlockKind::Q4_0 => q4_0(block, &mut out),
            BlockKind::Q4_1 => q4_1(block, &mut out),
        }
    }
    out
}

/// `1 / d`, or 0 for a zero scale.
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    // `as i8` saturates; |x · id| ≤ 127 up to rounding of `id`.
    out.extend(x.iter().map(|v| ((v * id).round() as i8).to_ne_bytes()[0]));
}

fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    // The f64 product of two f32 is exact: one rounding, as a fused multiply-add.
    let q = |v: f32| ((f64::from(v) * f64::from(id) + 8.5).trunc() as u8).min(15);
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[QK / 2 + j]) << 4)));
}

fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::MAX, f32::min);
    let max = x.iter().copied().fold(-f32::MAX, f32::max);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5).trunc() as u8).min(15);
    out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[QK / 2 + j]) << 4)));
}
