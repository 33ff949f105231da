"""Edge-case blocks for quantization at load (crates/longctx-models/tests/quantize_parity.rs):
f32 blocks quantized to Q8_0, Q4_0 and Q4_1 by gguf-py's reference quantizer
(`gguf.quants.quantize`, which reproduces llama.cpp's `quantize_row_*_ref`). Run by hand
(never by CI) with the pins of tools/oracles/requirements-gguf.txt:
    python3 tools/oracles/quantize_fixtures.py
Writes tests/fixtures/oracles/quantize.json: `values` (blocks of 32 f32, as the shortest
decimal that round-trips the f32) and, per type, each block's bytes as hex.
The blocks: all zeros, one non-zero value (either sign), ties for the largest magnitude with
opposite signs, values on the .5 rounding boundaries of each format, constant blocks, a large
outlier among small values, tiny (subnormal-f16) and huge scales, and seeded normal draws.
"""
import os
from importlib.metadata import version

import gguf
import numpy as np

from fixture_io import floats, write_fixture

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def blocks():
    rng = np.random.default_rng(20261203)
    out = [np.zeros(32), np.eye(1, 32, 5)[0] * 3.0, -np.eye(1, 32, 31)[0] * 0.75]
    tie = rng.normal(size=32) * 0.1
    tie[3], tie[20] = 2.0, -2.0
    out.append(tie)
    tie2 = tie.copy()
    tie2[3], tie2[20] = -2.0, 2.0
    out.append(tie2)
    # Multiples of amax/254 (Q8_0 halves), of amax/16 (Q4_0), of range/30 (Q4_1).
    out.append(np.arange(32) * (127.0 / 254.0) - 8.0)
    out.append(np.linspace(-8.0, 7.5, 32))
    out.append(np.arange(32) / 30.0 * 15.0)
    out.append(np.full(32, 0.3))
    out.append(np.full(32, -1.7))
    outlier = rng.normal(size=32) * 1e-3
    outlier[17] = 40.0
    out.append(outlier)
    out.append(rng.normal(size=32) * 1e-6)
    out.append(rng.normal(size=32) * 3e4)
    for scale in [0.02, 0.5, 1.0, 7.0]:
        for _ in range(6):
            out.append(rng.normal(size=32) * scale + rng.normal() * scale * 0.3)
    return np.stack(out).astype(np.float32)


def main():
    v = blocks()
    rows = []
    for i, b in enumerate(v):
        row = {"values": floats(b)}
        for name, q in [("q8_0", gguf.GGMLQuantizationType.Q8_0), ("q4_0", gguf.GGMLQuantizationType.Q4_0),
                        ("q4_1", gguf.GGMLQuantizationType.Q4_1)]:
            row[name] = gguf.quants.quantize(b.reshape(1, 32), q).tobytes().hex()
        rows.append(row)
    head = {"source": f"gguf-py {version('gguf')} gguf.quants.quantize, numpy {np.__version__}"}
    write_fixture(os.path.join(ROOT, "tests", "fixtures", "oracles", "quantize.json"), head, [("blocks", rows)], ROOT)


if __name__ == "__main__":
    main()
