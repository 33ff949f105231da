"""NF4 (QLoRA's 4-bit NormalFloat) quantization as bitsandbytes does it on the CPU, for
crates/longctx-models/tests/nf4_parity.rs. Run by hand (never by CI), in a venv with exactly
    bitsandbytes==0.48.2 torch==2.5.1 numpy==2.4.6
(Python 3.11.7; PyPI's torch 2.5.1+cu124 wheel was used, run on the CPU: no GPU is needed)
as
    python3 tools/oracles/nf4_fixtures.py
Writes tests/fixtures/oracles/nf4.json. Inputs and scales are float32 values written as the
shortest decimal that round-trips the float32; `*_hex` fields hold float32 little-endian bytes
in hex (all dequantized outputs, which is shorter, and the inputs of the row with NaN and
infinities). Lists:
- `nf4`: `bitsandbytes.functional.quantize_4bit(quant_type="nf4")` of float32 tensors
  (seeded normal matrices 8x64, 16x128, 2x128 and 3x96 -- the last one ends in a partial
  block --, and edge-case blocks: all zeros, negative zeros, constants, one outlier, one non-zero value,
  subnormal and huge scales, values whose distances to two neighbouring NF4 codes are equal
  in float32, and NaN / infinities), with the packed codes (hex), the absmax per block and
  `dequantize_4bit`'s output; where `double` is present, the same tensor quantized with
  `compress_statistics=True` (QLoRA's default): the 8-bit absmax codes (hex), state2's absmax,
  the offset and (but for the largest matrix, to keep the file small) the dequantized tensor.
- `blockwise`: `quantize_blockwise(blocksize=256)` (the 8-bit dynamic quantizer that double
  quantization applies to the absmax), on blocks of values at and around the midpoints of
  the dynamic code, and on seeded normal draws.
- `double`: absmax vectors (several blocks of 256, the last partial) double-quantized exactly
  as quantize_4bit(compress_statistics=True) does: offset = absmax.mean(), then
  quantize_blockwise(absmax - offset, blocksize=256); `restored` is
  dequantize_blockwise(...) + offset, as dequantize_4bit computes it.
- `means`: torch's float32 `mean()` of vectors of several lengths (the offset depends on its
  summation order); `generated_means`: `sum()` and `mean()` of longer vectors that the test
  regenerates (see `generated`), computed with one thread.
The head records the versions, torch's CPU capability, the NF4 table and the dynamic code
(as bitsandbytes' C++ CPU kernel leaves it: entry 0 set to -1.0).
"""
import os
import platform
from importlib.metadata import version

import numpy as np
import torch

import bitsandbytes.functional as F
from fixture_io import write_fixture

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
f32 = np.float32


def floats(v):
    """Float32 values as the shortest decimals that round-trip them (checked through Python's
    correctly rounded float(), as serde_json's `float_roundtrip` parses them)."""
    out = []
    for x in np.asarray(v, dtype=np.float32).reshape(-1):
        d = float(str(x))
        assert np.float32(d).tobytes() == x.tobytes(), x
        out.append(d)
    return out


def hexf(v):
    """Float32 values as their little-endian bytes in hex (bit-exact, NaN and -0.0 included)."""
    return np.asarray(v, dtype="<f4").tobytes().hex()


def short(x):
    """Draws rounded to 4 significant digits (shorter JSON, still no pattern)."""
    return np.vectorize(lambda v: float(f"{v:.4g}"))(np.asarray(x, dtype=np.float64))


def ulps_around(x, k):
    """The float32 values from k ulps below x to k ulps above it."""
    out = [f32(x)]
    lo = hi = f32(x)
    for _ in range(k):
        lo = np.nextafter(lo, f32(-np.inf), dtype=np.float32)
        hi = np.nextafter(hi, f32(np.inf), dtype=np.float32)
        out = [lo] + out + [hi]
    return out


def ties(code, scale, scaled):
    """Values x whose normalized value (x * (1/scale) when `scaled`, else x / scale, in float32)
    is as far from code[i] as from code[i+1] in float32, for each pair of neighbours, plus the
    float32 values one ulp on either side of each tie."""
    out = []
    inv = f32(1) / f32(scale)
    for i in range(len(code) - 1):
        lo, hi = f32(code[i]), f32(code[i + 1])
        mid = f32((float(lo) + float(hi)) / 2)
        for x in ulps_around(mid * f32(scale), 6):
            s = f32(x * inv) if scaled else f32(x / f32(scale))
            if abs(f32(s - lo)) == abs(f32(s - hi)):
                below = np.nextafter(x, f32(-np.inf), dtype=np.float32)
                above = np.nextafter(x, f32(np.inf), dtype=np.float32)
                out += [below, x, above]
    return np.unique(np.array(out, dtype=np.float32))


def in_blocks(values, head, blocksize):
    """`values` laid out in blocks of `blocksize` that each start with `head` (the block's
    absmax), the last block padded with zeros."""
    per = blocksize - 1
    out = []
    for b in range(0, len(values), per):
        chunk = list(values[b:b + per])
        out += [head] + chunk + [0.0] * (per - len(chunk))
    return np.array(out, dtype=np.float32)


def nf4_inputs(rng):
    cases = []
    cases.append(("normal 8x64", short(rng.normal(size=(8, 64))), 64, True))
    cases.append(("normal 16x128 * 0.02", short(rng.normal(size=(16, 128)) * 0.02), 64, "stats"))
    cases.append(("normal 2x128 * 3, blocksize 128", short(rng.normal(size=(2, 128)) * 3.0), 128, True))
    cases.append(("normal 3x96 (partial last block)", short(rng.normal(size=(3, 96))), 64, True))
    cases.append(("normal 2x64 * 7, blocksize 256 (one partial block)", short(rng.normal(size=(2, 64)) * 7), 256,
                  False))
    edge = []
    edge.append(np.zeros(64))
    negz = short(rng.normal(size=64))
    negz[::5] = -0.0
    edge.append(negz)
    edge.append(np.full(64, -0.0))
    edge.append(np.full(64, 0.3))
    edge.append(np.full(64, -1.7))
    outlier = short(rng.normal(size=64) * 1e-3)
    outlier[17] = 40.0
    edge.append(outlier)
    one = np.zeros(64)
    one[40] = -2.5
    edge.append(one)
    edge.append(short(rng.normal(size=64) * 1e-39))  # subnormal absmax: 1/absmax overflows to inf
    edge.append(short(rng.normal(size=64) * 1e37))
    edge.append(short(np.linspace(-1.0, 1.0, 64)))
    cases.append(("edge blocks", np.concatenate(edge), 64, True))
    code = F.get_4bit_type("nf4", device="cpu").numpy()
    for scale, scaled in [(1.0, True), (3.0, True), (0.37, True)]:
        t = ties(code, scale, scaled)
        cases.append((f"NF4 ties, absmax {scale}", in_blocks(t, scale, 64), 64, False))
        cases.append((f"NF4 ties, absmax -{scale}", in_blocks(-t, -scale, 64), 64, False))
    nonfinite = short(rng.normal(size=(4, 64)))
    nonfinite[0, 3] = np.nan
    nonfinite[1, 9] = np.inf
    nonfinite[2, 0] = -np.inf
    nonfinite[3, 5] = np.inf
    nonfinite[3, 6] = np.nan
    cases.append(("non-finite", nonfinite, 64, False))
    return cases


def nf4_rows(rng):
    rows = []
    for name, x, blocksize, double in nf4_inputs(rng):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        finite = bool(torch.isfinite(t).all())
        q, s = F.quantize_4bit(t, blocksize=blocksize, quant_type="nf4")
        d = F.dequantize_4bit(q, s)
        row = {"name": name, "blocksize": blocksize}
        if finite:
            row["values"] = floats(t.flatten())
        else:
            row["values_hex"] = hexf(t.flatten())
        row["codes"] = q.numpy().tobytes().hex()
        if finite:
            row["absmax"] = floats(s.absmax)
        else:
            row["absmax_hex"] = hexf(s.absmax)
        row["dequantized_hex"] = hexf(d.flatten())
        if double:
            q2, s2 = F.quantize_4bit(t, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
            assert torch.equal(q2, q)
            d2 = F.dequantize_4bit(q2, s2)
            row["double"] = {
                "absmax_codes": s2.absmax.numpy().tobytes().hex(),
                "absmax2": floats(s2.state2.absmax),
                "offset": float(f32(s2.offset.item())),
            }
            if double != "stats":
                row["double"]["dequantized_hex"] = hexf(d2.flatten())
        rows.append(row)
    return rows


def blockwise_rows(rng):
    rows = []
    code = F.create_dynamic_map().numpy()
    code[0] = -1.0  # as the CPU kernel sets it
    for name, x in [
        ("dynamic ties, absmax 1", in_blocks(ties(code, 1.0, False), 1.0, 256)),
        ("dynamic ties, absmax -3 (the first 255)", in_blocks(-ties(code, 3.0, False)[:255], -3.0, 256)),
        ("normal", np.concatenate([short(rng.normal(size=250)), np.zeros(40), np.full(10, -0.0), [5.0] * 4])),
    ]:
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        q, s = F.quantize_blockwise(t, blocksize=256)
        rows.append({
            "name": name,
            "blocksize": 256,
            "values": floats(t),
            "codes": q.numpy().tobytes().hex(),
            "absmax": floats(s.absmax),
            "dequantized_hex": hexf(F.dequantize_blockwise(q, s)),
        })
    return rows


def double_rows(rng):
    rows = []
    for name, absmax in [
        ("absmax of 520 normal blocks of 64",
         np.abs(short(rng.normal(size=(520, 64)))).max(axis=1)),
        ("absmax of 300 blocks, wide range",
         short(np.abs(rng.normal(size=300)) * 10.0 ** rng.uniform(-3, 1, size=300))),
        ("absmax with repeats", np.repeat(np.abs(short(rng.normal(size=40))), 7)[:270]),
    ]:
        a = torch.from_numpy(np.asarray(absmax, dtype=np.float32))
        offset = a.mean()
        q, s2 = F.quantize_blockwise(a - offset, blocksize=256)
        restored = F.dequantize_blockwise(q, s2)
        restored += offset
        rows.append({
            "name": name,
            "absmax": floats(a),
            "offset": float(f32(offset.item())),
            "codes": q.numpy().tobytes().hex(),
            "absmax2": floats(s2.absmax),
            "restored_hex": hexf(restored),
        })
    return rows


def mean_rows(rng):
    rows = []
    for n in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257]:
        v = np.abs(short(rng.normal(size=n) * rng.uniform(0.01, 10))).astype(np.float32)
        rows.append({"values": floats(v), "mean": float(f32(torch.from_numpy(v).mean().item()))})
    return rows


def generated(n, seed):
    """Vectors made without stored values, the same way as nf4_parity.rs: x_i =
    (((i * 2654435761 + seed) mod 2^32) >> 8) * 2^(i mod 7 - 24), exact in float32."""
    i = np.arange(n, dtype=np.uint64)
    k = ((i * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(2**32)) >> np.uint64(8)
    return (k.astype(np.float64) * 2.0 ** ((i % 7).astype(np.float64) - 24)).astype(np.float32)


def generated_mean_rows():
    rows = []
    for n, seed in [(300, 1), (1000, 2), (5000, 3), (32768, 4), (100000, 5)]:
        v = generated(n, seed)
        t = torch.from_numpy(v)
        rows.append({"n": n, "seed": seed, "sum": float(f32(t.sum().item())), "mean": float(f32(t.mean().item()))})
    return rows


def main():
    torch.set_num_threads(1)  # torch's sum splits inputs over 32768 values across threads
    rng = np.random.default_rng(20260417)
    nf4 = nf4_rows(rng)
    # The dynamic code as the CPU kernel leaves it (quantize_blockwise sets entry 0 to -1.0).
    _, state = F.quantize_blockwise(torch.ones(4), blocksize=256)
    head = {
        "source": f"bitsandbytes {version('bitsandbytes')} (CPU), torch {torch.__version__} "
                  f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, 1 thread), "
                  f"numpy {np.__version__}, Python {platform.python_version()}",
        "nf4_code": floats(F.get_4bit_type("nf4", device="cpu")),
        "dynamic_code": floats(state.code),
    }
    lists = [("nf4", nf4), ("blockwise", blockwise_rows(rng)), ("double", double_rows(rng)), ("means", mean_rows(rng)),
             ("generated_means", generated_mean_rows())]
    write_fixture(os.path.join(ROOT, "tests", "fixtures", "oracles", "nf4.json"), head, lists, ROOT)


if __name__ == "__main__":
    main()
