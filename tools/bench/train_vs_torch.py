#!/usr/bin/env python3
"""Training throughput, side by side in one run: `longctx bench train` against transformers +
peft on torch (CPU), on the same model and the same work — LoRA (rank r, alpha 2r, dropout 0)
on every projection (q/k/v/o/gate/up/down), one random sequence of --seq-len tokens per
optimizer step, the loss on every position, AdamW, clipping at 1.0, gradient checkpointing off
(or on with --checkpointing for both).

Each measurement is a separate process (so peak RSS is that of one engine alone): one warm-up
step, then --steps measured steps; tokens/s = seq_len / median step time. Engines alternate,
--repeat times per thread count, and the medians are compared (ratio = longctx / torch).

    python3 -m venv /work/venv-train && /work/venv-train/bin/pip install -r tools/oracles/requirements-train.txt gguf==0.16.3 sentencepiece
    cargo build --release -p longctx
    /work/venv-train/bin/python tools/bench/train_vs_torch.py --model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --seq-len 2048 --threads 1,2

The GGUF file is dequantized to f32 by both (transformers' `gguf_file=` loader; longctx's
dense GGUF loader); transformers 4.46 converts SmolLM2 with an untied, freshly initialized
LM head, which is tied back to the embedding here so both models are the same.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def torch_child(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(11)
    directory, name = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, vocab, (1, args.seq_len))
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tokens_per_s": args.seq_len / statistics.median(times), "step_seconds": times,
                      "peak_rss_bytes": peak, "trainable_parameters": sum(p.numel() for p in params)}))


def run_torch(args, threads):
    cmd = [sys.executable, __file__, "--child", "torch", "--model", args.model, "--seq-len", str(args.seq_len),
           "--steps", str(args.steps), "--lora-r", str(args.lora_r), "--threads", str(threads)]
    if args.checkpointing:
        cmd.append("--checkpointing")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_longctx(args, threads):
    cmd = [args.longctx, "bench", "train", "--model", args.model, "--seq-len", str(args.seq_len),
           "--steps", str(args.steps), "--lora-r", str(args.lora_r), "--threads", str(threads), "--json"]
    if args.checkpointing:
        cmd.append("--checkpointing")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--child", choices=["torch"])
    args = ap.parse_args()
    if args.child == "torch":
        args.threads = int(args.threads)
        return torch_child(args)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(run_longctx(args, threads))
            theirs.append(run_torch(args, threads))
        a = statistics.median(r["tokens_per_s"] for r in ours)
        b = statistics.median(r["tokens_per_s"] for r in theirs)
        ra = max(r["peak_rss_bytes"] for r in ours) / 2**20
        rb = max(r["peak_rss_bytes"] for r in theirs) / 2**20
        rows.append((threads, a, b, ra, rb))
        print(f"threads {threads}: longctx {a:.1f} tok/s ({ra:.0f} MiB), torch+peft {b:.1f} tok/s ({rb:.0f} MiB): "
              f"ratio {a / b:.2f}x tokens/s, {ra / rb:.2f}x memory", flush=True)
    print(json.dumps({"seq_len": args.seq_len, "lora_r": args.lora_r, "checkpointing": args.checkpointing,
                      "rows": [{"threads": t, "longctx_tok_s": a, "torch_tok_s": b, "ratio": a / b,
                                "longctx_peak_rss_mib": ra, "torch_peak_rss_mib": rb} for t, a, b, ra, rb in rows]}))


if __name__ == "__main__":
    main()
