"""Side-by-side embedding benchmark: `longctx bench embed` vs sentence-transformers on all-MiniLM-L6-v2,
the same 700 chunks of 200 characters and the same thread count, alternating the sides in each run.

    /tmp/benchenv/bin/python tools/bench/embed_vs_sentence_transformers.py \
        [--chunks ../shared/bench/chunks_700.json | --data-dir DIR] [--longctx target/release/longctx] \
        [--runs 5] [--threads 1,2] [--precisions f32,bf16] [--st-bf16] [--check] [--json] [--skip-longctx]

Pins: tools/oracles/requirements-minilm.txt; model in assets/minilm (tools/fetch_assets.sh). The chunks are
`chunks` of --chunks (default ../shared/bench/chunks_700.json, 700 x 200 characters); with --data-dir
instead, the contexts of the English LongBench files qasper, trec and multi_news (in that order, records
in file order) are concatenated and cut into consecutive 200-code-point pieces, the first 700 kept.

* sentence-transformers: torch.set_num_threads(T), one warm-up encode of a few texts, then
  encode(all 700, batch_size=32, normalize_embeddings=True) timed on its own (model loading excluded).
  --st-bf16 also times a bfloat16 copy of the model (PyTorch's bf16 CPU path, oneDNN; AMX where present).
* longctx: `longctx bench embed --model M --input FILE --threads T --precision P --json`, whose stdout
  is one JSON object {"chunks", "seconds", "chunks_per_s", "threads", "batch_size", "precision", "amx"};
  its own chunks_per_s is used.
For each thread count, --runs runs alternate the sides (sentence-transformers, longctx per precision,
sentence-transformers bf16); medians and the ratios longctx / sentence-transformers (f32) in chunks/s
are printed (--json: one JSON object). --check runs `longctx embed --precision P` once per precision
and reports, against sentence-transformers' f32 vectors, the largest absolute difference, the smallest
cosine, and top-10 agreement: for each of the first 100 chunks as a query, the share of its 10
nearest other chunks (by cosine) that both sides find. --skip-longctx measures sentence-transformers alone.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported; the model is local
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FILES = ("qasper", "trec", "multi_news")
N_CHUNKS, CHUNK = 700, 200


def make_chunks(data_dir):
    contexts = []
    for name in FILES:
        with open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
            contexts += [json.loads(line)["context"] for line in f]
    text = "".join(contexts)
    chunks = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)][:N_CHUNKS]
    assert len(chunks) == N_CHUNKS and all(len(c) == CHUNK for c in chunks)
    return chunks


def load_chunks(args):
    if args.data_dir:
        return make_chunks(args.data_dir)
    with open(args.chunks, encoding="utf-8") as f:
        chunks = json.load(f)["chunks"]
    assert len(chunks) == N_CHUNKS and all(len(c) == CHUNK for c in chunks), args.chunks
    return chunks


def st_run(model, chunks, batch_size):
    t = time.perf_counter()
    embs = model.encode(chunks, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return len(chunks) / (time.perf_counter() - t), embs


def longctx_run(args, path, threads, precision):
    cmd = [args.longctx, "bench", "embed", "--model", args.model, "--input", path, "--threads", str(threads),
           "--precision", precision, "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    res = json.loads([line for line in proc.stdout.splitlines() if line.strip()][-1])
    assert res["chunks"] == N_CHUNKS, res
    return res, wall


def top10(embs, queries=100):
    sims = embs[:queries] @ embs.T
    for i in range(queries):
        sims[i, i] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :10]


def check(args, path, precision, st_embs):
    out = path + f".{precision}.emb.jsonl"
    subprocess.run([args.longctx, "embed", "--model", args.model, "--input", path, "--precision", precision,
                    "--out", out], check=True, stdout=subprocess.DEVNULL)
    with open(out, encoding="utf-8") as f:
        rust = np.array([json.loads(line)["embedding"] for line in f if line.strip()], dtype=np.float32)
    assert rust.shape == st_embs.shape, (rust.shape, st_embs.shape)
    cos = np.sum(rust * st_embs, axis=1) / (np.linalg.norm(rust, axis=1) * np.linalg.norm(st_embs, axis=1))
    a, b = top10(rust.astype(np.float64)), top10(st_embs.astype(np.float64))
    agree = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))
    return {"max_abs_diff": float(np.abs(rust - st_embs).max()), "min_cosine": float(cos.min()),
            "top10_agreement": agree}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "minilm"))
    ap.add_argument("--chunks", default=os.path.join(ROOT, "..", "shared", "bench", "chunks_700.json"))
    ap.add_argument("--data-dir", help="official LongBench *.jsonl files (instead of --chunks)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--precisions", default="f32,bf16", help="longctx precisions, comma-separated")
    ap.add_argument("--st-bf16", action="store_true", help="also time sentence-transformers in bfloat16")
    ap.add_argument("--batch-size", type=int, default=32, help="sentence-transformers batch size")
    ap.add_argument("--check", action="store_true", help="compare longctx embed's output with sentence-transformers")
    ap.add_argument("--skip-longctx", action="store_true", help="measure sentence-transformers only")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()

    chunks = load_chunks(args)
    precisions = [] if args.skip_longctx else [p for p in args.precisions.split(",") if p]
    model = SentenceTransformer(args.model, device="cpu")
    model_bf16 = None
    if args.st_bf16:
        model_bf16 = SentenceTransformer(args.model, device="cpu").to(torch.bfloat16)
    tmp = tempfile.mkdtemp(prefix="embed_bench_")
    path = os.path.join(tmp, "chunks.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": c}, ensure_ascii=False) + "\n" for c in chunks)

    res = {"chunks": N_CHUNKS, "chunk_chars": CHUNK, "runs": args.runs, "batch_size": args.batch_size,
           "by_threads": {}}
    st_embs = None
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        model.encode(chunks[:4], batch_size=args.batch_size, normalize_embeddings=True)  # warm-up
        if model_bf16 is not None:
            model_bf16.encode(chunks[:4], batch_size=args.batch_size)
        rates = {"sentence_transformers": []}
        for r in range(args.runs):
            rate, st_embs = st_run(model, chunks, args.batch_size)
            rates["sentence_transformers"].append(rate)
            line = f"{threads} thread(s), run {r + 1}/{args.runs}: sentence-transformers {rate:.1f}"
            for p in precisions:
                info, _ = longctx_run(args, path, threads, p)
                rates.setdefault(f"longctx_{p}", []).append(info["chunks_per_s"])
                res["amx"] = info.get("amx")
                line += f", longctx {p} {info['chunks_per_s']:.1f}"
            if model_bf16 is not None:
                rate, _ = st_run(model_bf16, chunks, args.batch_size)
                rates.setdefault("sentence_transformers_bf16", []).append(rate)
                line += f", sentence-transformers bf16 {rate:.1f}"
            print(line + " chunks/s", file=sys.stderr)
        row = {side: {"chunks_per_s": statistics.median(v), "all": v} for side, v in rates.items()}
        base = row["sentence_transformers"]["chunks_per_s"]
        for side, v in row.items():
            v["ratio_over_st"] = v["chunks_per_s"] / base
        res["by_threads"][str(threads)] = row
    if args.check and st_embs is not None:
        res["check"] = {p: check(args, path, p, st_embs) for p in precisions}

    if args.json:
        print(json.dumps(res))
    else:
        print(f"{N_CHUNKS} chunks of {CHUNK} chars, batch {args.batch_size}, median of {args.runs} alternating runs"
              f" (AMX: {res.get('amx')})")
        print(f"{'threads':>7s} {'side':30s} {'chunks/s':>10s} {'vs ST f32':>10s}")
        for threads, row in res["by_threads"].items():
            for side, v in row.items():
                print(f"{threads:>7s} {side:30s} {v['chunks_per_s']:10.1f} {v['ratio_over_st']:9.2f}x")
        for p, c in res.get("check", {}).items():
            print(f"longctx {p} vs sentence-transformers f32: max abs diff {c['max_abs_diff']:.3g}, "
                  f"min cosine {c['min_cosine']:.7f}, top-10 agreement {c['top10_agreement']:.3f}")
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
