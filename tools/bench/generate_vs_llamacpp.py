"""Side-by-side generation benchmark: `longctx bench generate` vs llama.cpp (llama-cpp-python) on
the same GGUF file, the same prompt tokens (--prompt: a JSON file with `token_ids`, such as the
project's prompt_6000_smollm2.json) and the same thread count, in one run, alternating the two sides. Prints prefill and decode tokens/s
per prompt length (medians of --runs runs) and the ratio longctx / llama.cpp.

    python3 tools/bench/generate_vs_llamacpp.py --model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --longctx target/release/longctx --prompt PROMPT.json [--threads 1] [--runs 3] [--lengths 512,2048,6000] [--gen 128]

longctx runs with `--kv-cache f16` by default (llama.cpp's cache type); llama.cpp runs with its defaults for a CPU (f16 KV cache, n_batch 2048 / n_ubatch 512), and
`--no-extra-bufts` turns off its weight repacking / AMX buffers (AMX faults on machines whose
kernel does not grant it). Both sides decode greedily, ignoring EOS.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import time

import numpy as np


def llamacpp_runs(args, ids, lengths):
    import llama_cpp
    import llama_cpp.llama as L

    if args.no_extra_bufts:
        original = llama_cpp.llama_model_default_params

        def params():
            p = original()
            p.use_extra_bufts = False
            return p

        L.llama_cpp.llama_model_default_params = params
    model = llama_cpp.Llama(args.model, n_ctx=max(lengths) + args.gen + 16, n_threads=args.threads,
                            n_threads_batch=args.threads, verbose=False)
    vocab = model.n_vocab()
    rows = []
    for n in lengths:
        model.reset()
        t0 = time.perf_counter()
        model.eval(ids[:n])
        t1 = time.perf_counter()
        for _ in range(args.gen):
            ptr = llama_cpp.llama_get_logits_ith(model.ctx, -1)
            logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(vocab,))
            model.eval([int(np.argmax(logits))])
        t2 = time.perf_counter()
        rows.append({"prompt_tokens": n, "prefill_tok_s": n / (t1 - t0), "decode_tok_s": args.gen / (t2 - t1)})
    return rows


def longctx_runs(args, lengths):
    cmd = [args.longctx, "bench", "generate", "--model", args.model, "--prompt-tokens",
           ",".join(map(str, lengths)), "--gen-tokens", str(args.gen), "--threads", str(args.threads),
           "--prompt-ids", args.prompt, "--kv-cache", args.kv_cache, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--longctx", default="target/release/longctx")
    ap.add_argument("--prompt", required=True, help="JSON file with `token_ids` (at least the longest --lengths)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lengths", default="512,2048,6000")
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--no-extra-bufts", action="store_true")
    ap.add_argument("--kv-cache", default="f16", choices=["f16", "f32"],
                    help="longctx's KV cache type (llama.cpp's default cache is f16)")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    ids = json.load(open(args.prompt))["token_ids"]
    results = {"longctx": [], "llama.cpp": []}
    for run in range(args.runs):
        results["longctx"].append(longctx_runs(args, lengths))
        results["llama.cpp"].append(llamacpp_runs(args, ids, lengths))
        print(f"run {run + 1}/{args.runs} done", flush=True)
    print(f"\nthreads {args.threads}, {args.gen} decode tokens, medians of {args.runs} runs")
    print(f"{'prompt':>7} | {'prefill tok/s longctx':>21} {'llama.cpp':>10} {'ratio':>6} | "
          f"{'decode tok/s longctx':>20} {'llama.cpp':>10} {'ratio':>6} | peak RSS longctx")
    for i, n in enumerate(lengths):
        med = {side: {k: statistics.median(r[i][k] for r in runs) for k in ["prefill_tok_s", "decode_tok_s"]}
               for side, runs in results.items()}
        rss = max(r[i].get("peak_rss_bytes") or 0 for r in results["longctx"]) / 2**20
        a, b = med["longctx"], med["llama.cpp"]
        print(f"{n:>7} | {a['prefill_tok_s']:>21.1f} {b['prefill_tok_s']:>10.1f} {a['prefill_tok_s'] / b['prefill_tok_s']:>6.2f} | "
              f"{a['decode_tok_s']:>20.1f} {b['decode_tok_s']:>10.1f} {a['decode_tok_s'] / b['decode_tok_s']:>6.2f} | {rss:.0f} MiB")


if __name__ == "__main__":
    main()
