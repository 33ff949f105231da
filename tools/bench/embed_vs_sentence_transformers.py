"""Side-by-side embedding benchmark: `longctx bench embed` vs sentence-transformers on all-MiniLM-L6-v2,
the same 700 chunks of 200 characters and the same thread count, alternating the two sides.

    /work/venv-oracle/bin/python tools/bench/embed_vs_sentence_transformers.py --data-dir DIR \
        [--longctx target/release/longctx] [--runs 3] [--threads 1] [--check] [--json] [--skip-longctx]

Pins: tools/oracles/requirements-minilm.txt; model in assets/minilm (tools/fetch_assets.sh). The chunks
come from the English LongBench files in --data-dir DIR (official *.jsonl files; tests/data/longbench
also holds enough): the contexts of qasper, trec and
multi_news (in that order, records in file order) are concatenated and cut into consecutive
200-code-point pieces; the first 700 are written as JSONL {"text": ...} to a temporary file.

* sentence-transformers: torch.set_num_threads(--threads), one warm-up encode of a few texts, then
  encode(all 700, batch_size=32, normalize_embeddings=True) timed on its own (model loading excluded).
* longctx: `longctx bench embed --model M --input FILE --threads T --json`, whose stdout is one JSON
  object {"chunks", "seconds", "chunks_per_s", "threads", "batch_size"}; its own chunks_per_s is used.
Prints the medians over --runs alternating runs and the ratio longctx / sentence-transformers in
chunks/s (--json: one JSON object instead of the table). --check also runs
`longctx embed --model M --input FILE --out OUT` once and reports the largest absolute difference of
its embeddings (one {"embedding": [...]} line per chunk) from sentence-transformers'.
--skip-longctx measures sentence-transformers alone.
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


def st_run(model, chunks, batch_size):
    t = time.perf_counter()
    embs = model.encode(chunks, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return len(chunks) / (time.perf_counter() - t), embs


def longctx_run(args, path):
    cmd = [args.longctx, "bench", "embed", "--model", args.model, "--input", path, "--threads", str(args.threads),
           "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    out = proc.stdout
    res = json.loads([line for line in out.splitlines() if line.strip()][-1])
    assert res["chunks"] == N_CHUNKS, res
    return res, wall


def check(args, path, st_embs):
    out = path + ".emb.jsonl"
    subprocess.run([args.longctx, "embed", "--model", args.model, "--input", path, "--out", out], check=True,
                   stdout=subprocess.DEVNULL)
    with open(out, encoding="utf-8") as f:
        rust = np.array([json.loads(line)["embedding"] for line in f if line.strip()], dtype=np.float32)
    assert rust.shape == st_embs.shape, (rust.shape, st_embs.shape)
    cos = np.sum(rust * st_embs, axis=1) / (np.linalg.norm(rust, axis=1) * np.linalg.norm(st_embs, axis=1))
    return {"max_abs_diff": float(np.abs(rust - st_embs).max()), "min_cosine": float(cos.min())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "minilm"))
    ap.add_argument("--data-dir", required=True, help="official LongBench *.jsonl files")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32, help="sentence-transformers batch size")
    ap.add_argument("--check", action="store_true", help="compare longctx embed's output with sentence-transformers")
    ap.add_argument("--skip-longctx", action="store_true", help="measure sentence-transformers only")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    chunks = make_chunks(args.data_dir)
    model = SentenceTransformer(args.model, device="cpu")
    model.encode(chunks[:4], batch_size=args.batch_size, normalize_embeddings=True)  # warm-up
    tmp = tempfile.mkdtemp(prefix="embed_bench_")
    path = os.path.join(tmp, "chunks.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": c}, ensure_ascii=False) + "\n" for c in chunks)

    st_rates, lc_rates, lc_walls, lc_info, st_embs = [], [], [], {}, None
    for r in range(args.runs):
        rate, st_embs = st_run(model, chunks, args.batch_size)
        st_rates.append(rate)
        if not args.skip_longctx:
            lc_info, wall = longctx_run(args, path)
            lc_rates.append(lc_info["chunks_per_s"])
            lc_walls.append(wall)
        print(f"run {r + 1}/{args.runs}: sentence-transformers {rate:.1f} chunks/s"
              + ("" if args.skip_longctx else f", longctx {lc_rates[-1]:.1f} chunks/s"), file=sys.stderr)

    res = {"chunks": N_CHUNKS, "chunk_chars": CHUNK, "threads": args.threads, "runs": args.runs,
           "sentence_transformers": {"chunks_per_s": statistics.median(st_rates), "batch_size": args.batch_size,
                                     "all": st_rates}}
    if not args.skip_longctx:
        res["longctx"] = {"chunks_per_s": statistics.median(lc_rates), "process_wall_s": statistics.median(lc_walls),
                          "batch_size": lc_info.get("batch_size"), "threads": lc_info.get("threads"),
                          "all": lc_rates}
        res["ratio_longctx_over_st"] = res["longctx"]["chunks_per_s"] / res["sentence_transformers"]["chunks_per_s"]
        if args.check:
            res["check"] = check(args, path, st_embs)

    if args.json:
        print(json.dumps(res))
    else:
        print(f"{N_CHUNKS} chunks of {CHUNK} chars, {args.threads} thread(s), median of {args.runs} runs")
        print(f"{'side':24s} {'chunks/s':>10s} {'batch':>6s}")
        print(f"{'sentence-transformers':24s} {res['sentence_transformers']['chunks_per_s']:10.1f} {args.batch_size:6d}")
        if not args.skip_longctx:
            lc = res["longctx"]
            print(f"{'longctx':24s} {lc['chunks_per_s']:10.1f} {str(lc['batch_size']):>6s}"
                  f"   (process wall {lc['process_wall_s']:.2f} s incl. model load)")
            print(f"ratio longctx / sentence-transformers: {res['ratio_longctx_over_st']:.2f}x")
            if "check" in res:
                print(f"embeddings vs sentence-transformers: max abs diff {res['check']['max_abs_diff']:.3g}, "
                      f"min cosine {res['check']['min_cosine']:.7f}")
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
