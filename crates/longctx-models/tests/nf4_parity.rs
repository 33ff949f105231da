//! NF4 quantization (`longctx_models::nf4`) against bitsandbytes 0.48.2 on the CPU
//! (`tools/oracles/nf4_fixtures.py` wrote `tests/fixtures/oracles/nf4.json`): the packed
//! codes, the scales and the dequantized values of `quantize_4bit` / `dequantize_4bit`
//! (quant_type "nf4"), with and without double quantization of the scales, the 8-bit
//! blockwise quantizer that double quantization uses, and torch's float32 mean (its offset),
//! all bit for bit.

use std::path::{Path, PathBuf};

use longctx_models::nf4::{
    double_quantize, quantize, quantize_blockwise, quantize_double, torch_mean, torch_sum, Nf4Double, Nf4Error,
    DOUBLE_QUANT_BLOCKSIZE, DYNAMIC_CODES, NF4_CODES,
};
use serde_json::Value;

fn fixture() -> Value {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles/nf4.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `row[key]` as f32: a list of numbers, or (`key_hex`) float32 little-endian bytes in hex.
fn floats(row: &Value, key: &str) -> Vec<f32> {
    if let Some(list) = row.get(key) {
        return list.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    }
    let bytes = unhex(row[format!("{key}_hex")].as_str().unwrap());
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Equal bit for bit (any NaN matches any NaN).
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{what}[{i}]: got {g:e}, want {w:e}");
    }
}

#[test]
fn the_tables_are_bitsandbytes() {
    let f = fixture();
    assert_bits(&NF4_CODES, &floats(&f, "nf4_code"), "NF4 code");
    assert_bits(&DYNAMIC_CODES, &floats(&f, "dynamic_code"), "dynamic code");
}

#[test]
fn nf4_matches_quantize_4bit_and_dequantize_4bit() {
    let f = fixture();
    let rows = f["nf4"].as_array().unwrap();
    assert!(rows.len() >= 13);
    let (mut values_seen, mut doubles) = (0, 0);
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let blocksize = row["blocksize"].as_u64().unwrap() as usize;
        let values = floats(row, "values");
        let q = quantize(&values, blocksize).unwrap();
        assert_eq!(q.len(), values.len());
        assert_eq!(hex(&q.codes), row["codes"].as_str().unwrap(), "{name}: codes");
        assert_bits(&q.absmax, &floats(row, "absmax"), &format!("{name}: absmax"));
        assert_bits(&q.dequantize(), &floats(row, "dequantized"), &format!("{name}: dequantized"));
        values_seen += values.len();
        let Some(double) = row.get("double") else { continue };
        let d = quantize_double(&values, blocksize).unwrap();
        assert_eq!(d.codes, q.codes, "{name}");
        assert_eq!(d.absmax.offset.to_bits(), (double["offset"].as_f64().unwrap() as f32).to_bits(), "{name}: offset");
        assert_eq!(d.absmax.quantized.blocksize, DOUBLE_QUANT_BLOCKSIZE);
        assert_eq!(hex(&d.absmax.quantized.codes), double["absmax_codes"].as_str().unwrap(), "{name}: absmax codes");
        assert_bits(&d.absmax.quantized.absmax, &floats(double, "absmax2"), &format!("{name}: absmax2"));
        if double.get("dequantized_hex").is_some() {
            assert_bits(&d.dequantize(), &floats(double, "dequantized"), &format!("{name}: double dequantized"));
        }
        doubles += 1;
    }
    assert!(values_seen > 4000 && doubles >= 4, "{values_seen} values, {doubles} double-quantized");
}

/// The tie rows do hold values whose f32 distances to two neighbouring codes are equal (and
/// bitsandbytes gave them the lower code, as `quantize` does).
#[test]
fn the_tie_rows_exercise_ties() {
    let f = fixture();
    let mut ties = 0;
    for row in f["nf4"].as_array().unwrap() {
        if !row["name"].as_str().unwrap().starts_with("NF4 ties") {
            continue;
        }
        let values = floats(row, "values");
        let codes = unhex(row["codes"].as_str().unwrap());
        for (b, block) in values.chunks(64).enumerate() {
            let inverse = 1.0 / block.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (k, &x) in block.iter().enumerate() {
                let s = (x * inverse).clamp(-1.0, 1.0);
                let i = b * 64 + k;
                let code = usize::from(if i % 2 == 0 { codes[i / 2] >> 4 } else { codes[i / 2] & 15 });
                if code < 15 && (s - NF4_CODES[code]).abs() == (s - NF4_CODES[code + 1]).abs() {
                    ties += 1;
                }
                if code > 0 {
                    assert!((s - NF4_CODES[code - 1]).abs() > (s - NF4_CODES[code]).abs(), "{x}");
                }
            }
        }
    }
    assert!(ties >= 10, "{ties} ties");
}

#[test]
fn blockwise_matches_quantize_blockwise() {
    let f = fixture();
    let rows = f["blockwise"].as_array().unwrap();
    assert!(rows.len() >= 3);
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let q = quantize_blockwise(&floats(row, "values"), row["blocksize"].as_u64().unwrap() as usize).unwrap();
        assert_eq!(hex(&q.codes), row["codes"].as_str().unwrap(), "{name}: codes");
        assert_bits(&q.absmax, &floats(row, "absmax"), &format!("{name}: absmax"));
        assert_bits(&q.dequantize(), &floats(row, "dequantized"), &format!("{name}: dequantized"));
    }
}

#[test]
fn double_quantization_of_scales_matches() {
    let f = fixture();
    let rows = f["double"].as_array().unwrap();
    assert!(rows.len() >= 3);
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let absmax = floats(row, "absmax");
        let d = double_quantize(&absmax);
        assert_eq!(d.offset.to_bits(), (row["offset"].as_f64().unwrap() as f32).to_bits(), "{name}: offset");
        assert_eq!(hex(&d.quantized.codes), row["codes"].as_str().unwrap(), "{name}: codes");
        assert_bits(&d.quantized.absmax, &floats(row, "absmax2"), &format!("{name}: absmax2"));
        assert_bits(&d.dequantize(), &floats(row, "restored"), &format!("{name}: restored"));
        assert!(d.quantized.absmax.len() >= 2, "{name}: several second-level blocks");
        // Dequantizing a double-quantized state uses the restored scales.
        let nf4 = Nf4Double { blocksize: 2, codes: vec![0x7f; absmax.len()], absmax: d.clone() };
        let restored = d.dequantize();
        assert_bits(&nf4.absmax(), &restored, name);
        let expected: Vec<f32> = restored.iter().flat_map(|&a| [NF4_CODES[7] * a, NF4_CODES[15] * a]).collect();
        assert_bits(&nf4.dequantize(), &expected, name);
    }
}

#[test]
fn torch_mean_matches_torch() {
    let f = fixture();
    let rows = f["means"].as_array().unwrap();
    assert!(rows.len() >= 15);
    for row in rows {
        let values = floats(row, "values");
        let want = row["mean"].as_f64().unwrap() as f32;
        assert_eq!(torch_mean(&values).to_bits(), want.to_bits(), "{} values", values.len());
    }
}

/// `tools/oracles/nf4_fixtures.py`'s `generated`: x_i = (((i · 2654435761 + seed) mod 2^32) >> 8)
/// · 2^(i mod 7 − 24), exact in f32.
fn generated(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let k = (i.wrapping_mul(2_654_435_761).wrapping_add(seed) % (1 << 32)) >> 8;
            (k as f64 * 2f64.powi((i % 7) as i32 - 24)) as f32
        })
        .collect()
}

#[test]
fn torch_mean_matches_torch_on_long_vectors() {
    let f = fixture();
    let rows = f["generated_means"].as_array().unwrap();
    assert!(rows.len() >= 5);
    for row in rows {
        let n = row["n"].as_u64().unwrap() as usize;
        let values = generated(n, row["seed"].as_u64().unwrap());
        let sum = row["sum"].as_f64().unwrap() as f32;
        assert_eq!(torch_sum(&values).to_bits(), sum.to_bits(), "{n} values: sum");
        let mean = row["mean"].as_f64().unwrap() as f32;
        assert_eq!(torch_mean(&values).to_bits(), mean.to_bits(), "{n} values: mean");
    }
}

#[test]
fn bad_inputs_are_errors() {
    assert_eq!(quantize(&[1.0; 3], 64), Err(Nf4Error::OddLength(3)));
    assert_eq!(quantize(&[1.0; 4], 0), Err(Nf4Error::ZeroBlocksize));
    assert!(quantize_blockwise(&[1.0], 0).is_err());
    let empty = quantize(&[], 64).unwrap();
    assert!(empty.is_empty() && empty.dequantize().is_empty());
    // A single block: its scale minus the mean is 0 (bitsandbytes' CPU kernel crashes here);
    // the 0.0 code restores the scale exactly.
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.1).collect();
    let d = quantize_double(&x, 64).unwrap();
    assert_eq!(d.absmax(), quantize(&x, 64).unwrap().absmax);
    assert_eq!(d.dequantize(), quantize(&x, 64).unwrap().dequantize());
}
