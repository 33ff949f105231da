#!/usr/bin/env python3
"""The memory planner against the peak RSS of `longctx train` on this machine.

For each model × sequence length × (LoRA, full) × (checkpointing off, on), trains one optimizer
step on one sequence of exactly N tokens (a synthetic conversation truncated to N, every
assistant token a target: the LM head's worst case) and records the peak RSS
(`/usr/bin/time -f %M`) beside `longctx plan train --trainer longctx --json` for the same
settings. Writes tests/fixtures/plan/measured_rss.json (checked by
crates/longctx-train/tests/plan_measured.rs) and prints the README's table.

    python3 tools/bench/plan_vs_rss.py --binary target/release/longctx \\
        --model tiny=tests/fixtures/train/llama \\
        --model smollm2=assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --full-model smollm2=/path/to/SmolLM2-135M-Instruct  # safetensors: full fine-tuning

A GGUF file trains with LoRA only, so full fine-tuning of SmolLM2 needs its safetensors
directory (`--full-model`; e.g. the GGUF dequantized by transformers and saved with
safetensors). Run it on an idle machine: nothing else should allocate meanwhile.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no out what up said more "
    "about into them can only other time new some could these two may first then do any like my now over "
    "such our man me even most made after also did many before must through years where much your way "
    "well down should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know while last "
    "might us great old year off come since against go came right used take three"
).split()


def write_data(path):
    rng = random.Random(1)
    text = " ".join(rng.choice(WORDS) for _ in range(40000))
    conv = {"messages": [{"role": "user", "content": "Write a long text."}, {"role": "assistant", "content": text}]}
    with open(path, "w") as f:
        f.write(json.dumps(conv) + "\n")


def config(name, out, model, data, n, full, ckpt):
    return f"""name = "{name}"
output_dir = "{out}"
full = {"true" if full else "false"}
[model]
path = "{model}"
[data]
path = "{data}"
max_seq_len = {n}
overlong = "truncate"
batching = "naive"
loss = "token-mean"
[optim]
lr = 1e-4
epochs = 1
micro_batch_tokens = {n}
grad_accum = 1
gradient_checkpointing = {"true" if ckpt else "false"}
[output]
save_every = 0
"""


def measure(binary, work, name, model, data, n, full, ckpt):
    cfg = os.path.join(work, name + ".toml")
    with open(cfg, "w") as f:
        f.write(config(name, os.path.join(work, "out"), model, data, n, full, ckpt))
    rss = os.path.join(work, name + ".rss")
    subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", rss, binary, "train", cfg, "--max-steps", "1"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(["rm", "-rf", os.path.join(work, "out", name)], check=True)
    with open(rss) as f:
        return int(f.read().split()[-1]) * 1024


def planned(binary, shape_model, n, full, ckpt):
    args = [binary, "plan", "train", "--model", shape_model, "--seq-len", str(n), "--trainer", "longctx"]
    args += ["--memory-gib", "1000", "--checkpointing", "layer" if ckpt else "none", "--json"]
    if full:
        args.append("--full")
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)["peak_bytes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/longctx")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH trained with LoRA (and full if safetensors)")
    ap.add_argument("--full-model", action="append", default=[], help="NAME=PATH for full fine-tuning of NAME")
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--out", default="tests/fixtures/plan/measured_rss.json")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    full_models = dict(m.split("=", 1) for m in args.full_model)
    lengths = [int(x) for x in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "long.jsonl")
        write_data(data)
        for name, path in models.items():
            for n in lengths:
                for full in (False, True):
                    model = full_models.get(name, path) if full else path
                    if full and model.endswith(".gguf"):
                        continue
                    for ckpt in (False, True):
                        run = f"{name}-{n}-{'full' if full else 'lora'}-{'ckpt' if ckpt else 'none'}"
                        rss = measure(args.binary, work, run, model, data, n, full, ckpt)
                        plan = planned(args.binary, path, n, full, ckpt)
                        rows.append(
                            {"model": name, "shape_from": path, "seq_len": n, "full": full, "checkpointing": ckpt,
                             "measured_bytes": rss, "planned_bytes": plan}
                        )
                        print(f"{run}: measured {rss / 2**20:.0f} MiB, planned {plan / 2**20:.0f} MiB "
                              f"({plan / rss - 1:+.1%})", file=sys.stderr)
    record = {
        "what": "peak RSS of `longctx train --max-steps 1` on one sequence of N tokens (tools/bench/plan_vs_rss.py)",
        "threads": os.cpu_count(),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print("| model | tokens | method | checkpointing | measured MiB | planned MiB | error |")
    print("|--|--|--|--|--|--|--|")
    for r in rows:
        print(f"| {r['model']} | {r['seq_len']:,} | {'full' if r['full'] else 'LoRA'} | "
              f"{'layer' if r['checkpointing'] else 'none'} | {r['measured_bytes'] / 2**20:,.0f} | "
              f"{r['planned_bytes'] / 2**20:,.0f} | {r['planned_bytes'] / r['measured_bytes'] - 1:+.1%} |")


if __name__ == "__main__":
    main()
