//! The floating-point arithmetic of LongBench's `eval.py`, reproduced bit for bit.
//!
//! * `scorer` sums per-sample scores left to right and rounds with Python's `round(x, 2)`
//!   (correctly rounded, ties to even on the exact binary value): [`py_round2`].
//! * `scorer_e` averages with `np.mean`, whose sum is numpy's pairwise summation over buffers
//!   of 8192 elements ([`np_mean`]), and rounds an `np.float64` — `round()` then goes through
//!   `np.round`, which is `rint(x * 100) / 100`, not correctly rounded ([`np_round2`]).
//! * `json.dump` writes floats with `float.__repr__` ([`py_repr`]), `NaN` for NaN.

/// Python's `round(x, 2)` for a float.
pub fn py_round2(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Rust's fixed-precision formatting is exact and rounds ties to even, like CPython's dtoa.
    format!("{x:.2}").parse().expect("formatted float parses")
}

/// `round(np.float64(x), 2)`: `np.rint(x * 100.0) / 100.0`.
pub fn np_round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

/// numpy's `pairwise_sum` for float64 (`numpy/_core/src/umath/loops_utils.h.src`).
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean(values)` for a list of floats (NaN for an empty list, as numpy returns).
pub fn np_mean(values: &[f64]) -> f64 {
    // np.add.reduce starts from the identity 0.0 and feeds the inner loop buffers of 8192.
    const BUFSIZE: usize = 8192;
    let mut acc = 0.0;
    for chunk in values.chunks(BUFSIZE) {
        acc += pairwise_sum(chunk);
    }
    acc / values.len() as f64
}

/// `float.__repr__` as `json.dump` writes it (`NaN`, `Infinity`, `-Infinity` for non-finite).
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Shortest round-trip digits, from Rust's `{:e}` (e.g. "-1.2345e2", "0e0").
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = i32::try_from(digits.len()).expect("a double has at most 17 significant digits");
    if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if ndigits > exp + 1 {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}{digits}{}.0", "0".repeat((exp + 1 - ndigits) as usize))
        }
    } else {
        let mant = if ndigits > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_correctly_rounded_half_even() {
        assert_eq!(py_round2(0.125), 0.12);
        assert_eq!(py_round2(0.375), 0.38);
        assert_eq!(py_round2(2.675), 2.67); // 2.67499999…
        assert_eq!(py_round2(1.115), 1.11); // 1.11499999…
        assert!(py_round2(f64::NAN).is_nan());
    }

    #[test]
    fn numpy_round_multiplies_first() {
        // 1.115 * 100 == 111.5 exactly in binary, so rint gives 112.
        assert_eq!(np_round2(1.115), 1.12);
        assert_eq!(np_round2(0.125), 0.12);
    }

    #[test]
    fn repr_like_python() {
        for (x, s) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (45.0, "45.0"),
            (12.34, "12.34"),
            (0.01, "0.01"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (1e15, "1000000000000000.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100.0"),
        ] {
            assert_eq!(py_repr(x), s);
        }
        assert_eq!(py_repr(f64::NAN), "NaN");
    }

    #[test]
    fn mean_of_empty_is_nan() {
        assert!(np_mean(&[]).is_nan());
        assert_eq!(np_mean(&[1.0, 0.5]), 0.75);
    }
}
