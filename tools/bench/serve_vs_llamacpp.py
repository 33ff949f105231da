"""Side-by-side serving benchmark: `longctx serve` vs llama-cpp-python's OpenAI-compatible server on the
same GGUF file and the same thread count, both driven by the same load generator (`longctx bench serve`:
chat completions of one short prompt, greedy, max_tokens each) at 1 / 4 / 16 concurrent clients.

    /tmp/benchenv/bin/python tools/bench/serve_vs_llamacpp.py \
        [--model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--longctx target/release/longctx] \
        [--threads 2] [--clients 1,4,16] [--requests 48] [--max-tokens 16] [--rounds 2] [--json]

Needs llama-cpp-python with its server extra (uvicorn, fastapi, sse-starlette, starlette-context,
pydantic-settings), built with -DGGML_NATIVE=OFF and explicit AVX2/AVX-512/VNNI flags without AMX
(see tools/bench/generate_vs_llamacpp.py). Both servers run for the whole benchmark, on ports
--port and --port + 1; each round measures longctx then llama.cpp (alternating which goes first);
the medians over rounds of requests/s and of p50 / p99 latency are printed per level, with the ratio
longctx / llama.cpp in requests/s and longctx's own scaling (requests/s at N clients over 1 client).

* longctx: `longctx serve --model M --port P --kv-cache f16` with RAYON_NUM_THREADS=T (its defaults:
  continuous batching, --max-batch 16).
* llama.cpp: `python -m llama_cpp.server --model M --port P+1 --n_threads T --n_threads_batch T
  --n_ctx 4096` (f16 KV cache, the chat template from the GGUF; it answers one request at a time).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def wait_ready(url, proc, name, timeout=300):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    sys.exit(f"{name} did not answer {url}/v1/models within {timeout} s")


def load(args, url):
    cmd = [args.longctx, "bench", "serve", "--url", url, "--clients", args.clients, "--requests",
           str(args.requests), "--max-tokens", str(args.max_tokens), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    rep = json.loads(proc.stdout)
    for lvl in rep["levels"]:
        if lvl["errors"]:
            sys.exit(f"{url}: {lvl['errors']} failed requests at {lvl['clients']} clients: {lvl['error_kinds']}")
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=8731)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    lc_url, ll_url = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    lc = subprocess.Popen([args.longctx, "serve", "--model", args.model, "--port", str(args.port), "--kv-cache", "f16"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ll = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--port",
                           str(args.port + 1), "--n_threads", str(args.threads), "--n_threads_batch",
                           str(args.threads), "--n_ctx", "4096", "--verbose", "False"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(lc_url, lc, "longctx serve")
        wait_ready(ll_url, ll, "llama_cpp.server")
        runs = {"longctx": [], "llama_cpp": []}
        for r in range(args.rounds):
            order = [("longctx", lc_url), ("llama_cpp", ll_url)]
            for name, url in order if r % 2 == 0 else order[::-1]:
                rep = load(args, url)
                runs[name].append(rep)
                print(f"round {r + 1}/{args.rounds} {name}: "
                      + ", ".join(f"{l['clients']} clients {l['requests_per_s']:.2f} req/s" for l in rep["levels"]),
                      file=sys.stderr)
    finally:
        for p in (lc, ll):
            p.terminate()
        for p in (lc, ll):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def med(name, i, key):
        vals = [rep["levels"][i][key] if "." not in key else rep["levels"][i][key.split(".")[0]][key.split(".")[1]]
                for rep in runs[name]]
        return statistics.median(vals)

    levels = []
    for i, c in enumerate(int(c) for c in args.clients.split(",")):
        row = {"clients": c}
        for name in runs:
            row[name] = {"requests_per_s": med(name, i, "requests_per_s"),
                         "p50_ms": med(name, i, "latency.p50_ms"), "p99_ms": med(name, i, "latency.p99_ms"),
                         # Generated tokens per answer (both sides should stop at max_tokens alike).
                         "tokens_per_request": med(name, i, "completion_tokens_per_s") / med(name, i, "requests_per_s")}
        row["ratio_requests_per_s"] = row["longctx"]["requests_per_s"] / row["llama_cpp"]["requests_per_s"]
        levels.append(row)
    for name in runs:
        one = levels[0][name]["requests_per_s"]
        for row in levels:
            row[name]["scaling_over_first_level"] = row[name]["requests_per_s"] / one
    res = {"model": os.path.basename(args.model), "threads": args.threads, "requests": args.requests,
           "max_tokens": args.max_tokens, "rounds": args.rounds, "levels": levels}
    if args.json:
        print(json.dumps(res))
        return
    print(f"{res['model']}, {args.threads} thread(s), {args.requests} requests per level, max_tokens "
          f"{args.max_tokens}, medians of {args.rounds} rounds")
    print(f"{'clients':>7s} {'longctx req/s':>14s} {'p50/p99 ms':>16s} {'llama.cpp req/s':>16s} {'p50/p99 ms':>16s}"
          f" {'ratio':>6s} {'scaling lc/ll':>14s} {'tokens/answer lc/ll':>20s}")
    for row in levels:
        a, b = row["longctx"], row["llama_cpp"]
        print(f"{row['clients']:7d} {a['requests_per_s']:14.2f} {a['p50_ms']:7.0f}/{a['p99_ms']:<8.0f}"
              f" {b['requests_per_s']:16.2f} {b['p50_ms']:7.0f}/{b['p99_ms']:<8.0f} {row['ratio_requests_per_s']:5.2f}x"
              f" {a['scaling_over_first_level']:6.2f}/{b['scaling_over_first_level']:.2f}"
              f" {a['tokens_per_request']:10.1f}/{b['tokens_per_request']:.1f}")


if __name__ == "__main__":
    main()
