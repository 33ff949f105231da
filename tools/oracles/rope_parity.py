"""RoPE oracle: inverse frequencies, attention factors and cos/sin as transformers computes them.

Writes tests/fixtures/oracles/rope/cases.json for crates/longctx-models/tests/rope_parity.rs.
Run by hand (never by CI), in an environment with the pins of tools/oracles/requirements-rope.txt:
    python3 tools/oracles/rope_parity.py

For each case (a tiny Llama config: head_dim, theta, max_position_embeddings=64 and a
rope_scaling) it records
  * ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=s) for s in (None, 64, 200, 1000):
    the float32 inverse frequencies and the attention factor;
  * LlamaRotaryEmbedding run the way a model runs it: forward passes over position chunks
    (one pass of 0..200, then chunks 0..50, 50..130, 130..131, ...; dynamic NTK recomputes
    its frequencies when a pass goes past what it cached), with cos/sin at a few positions of
    each pass.
"""
import json
import os

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "oracles", "rope")

CASES = [
    ("default", 64, 10000.0, None),
    ("default_theta5e5_hd128", 128, 500000.0, None),
    ("linear4", 64, 10000.0, {"rope_type": "linear", "factor": 4.0}),
    ("linear_legacy_type", 32, 10000.0, {"type": "linear", "factor": 2.5}),
    ("dynamic2", 64, 10000.0, {"rope_type": "dynamic", "factor": 2.0}),
    ("dynamic4_hd32", 32, 1000000.0, {"rope_type": "dynamic", "factor": 4.0}),
    ("yarn4", 64, 10000.0, {"rope_type": "yarn", "factor": 4.0}),
    ("yarn8_custom", 64, 10000.0, {"rope_type": "yarn", "factor": 8.0, "beta_fast": 16.0, "beta_slow": 2.0,
                                   "attention_factor": 1.2}),
    ("yarn2_hd16", 16, 10000.0, {"rope_type": "yarn", "factor": 2.0}),
    ("llama3_8", 64, 500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    ("llama3_4_hd128", 128, 500000.0, {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
]
SEQ_LENS = [None, 64, 200, 1000]
# Forward passes as (start, end) position ranges, run in order on one rotary module.
SCHEDULES = {
    "single": [(0, 200)],
    "chunked": [(0, 50), (50, 130), (130, 131), (131, 132), (132, 200), (200, 201)],
    "reset": [(0, 100), (0, 10)],
}
PROBE = [0, 1, 7, 49, 63, 64, 65, 99, 129, 130, 131, 199, 200]


def config(head_dim, theta, scaling):
    return LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, num_key_value_heads=2,
                       intermediate_size=8, num_hidden_layers=1, vocab_size=16, max_position_embeddings=64,
                       rope_theta=theta, rope_scaling=scaling)


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for name, head_dim, theta, scaling in CASES:
        cfg = config(head_dim, theta, scaling)
        rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        init = []
        for s in SEQ_LENS:
            inv_freq, attn = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", seq_len=s)
            init.append({"seq_len": s, "inv_freq": inv_freq.float().tolist(), "attention_factor": float(attn)})
        runs = {}
        for sched_name, passes in SCHEDULES.items():
            rot = LlamaRotaryEmbedding(config=cfg)
            out = []
            for start, end in passes:
                pos = torch.arange(start, end).unsqueeze(0)
                x = torch.zeros(1, end - start, head_dim, dtype=torch.float32)
                cos, sin = rot(x, pos)
                probes = [p for p in PROBE if start <= p < end]
                out.append({
                    "start": start, "end": end,
                    "inv_freq": rot.inv_freq.float().tolist(),
                    "positions": probes,
                    "cos": [cos[0, p - start].tolist() for p in probes],
                    "sin": [sin[0, p - start].tolist() for p in probes],
                })
            runs[sched_name] = out
        cases.append({"name": name, "head_dim": head_dim, "rope_theta": theta, "max_position_embeddings": 64,
                      "rope_scaling": scaling, "init": init, "runs": runs})
    meta = {"generator": "python3 tools/oracles/rope_parity.py", "torch": torch.__version__,
            "transformers": transformers.__version__}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"meta": meta, "cases": cases}, f)
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
