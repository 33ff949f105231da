"""Benchmark: `longctx score` vs LongBench's eval.py on the same prediction directories.

Run by hand (not a test):
    python3 tools/bench/score_vs_evalpy.py --longbench-dir /tmp/longbench \
        --longctx target/release/longctx [--runs 3] [DIR ...]
--longbench-dir holds LongBench's eval.py and metrics.py (see tools/oracles/README.md); the
packages of tools/oracles/requirements.txt must be installed. Both sides are pinned to one
CPU (taskset -c 0) and run alternately; each run's result.json is compared (as parsed JSON:
eval.py orders datasets by os.listdir). Prints median wall times and the ratio.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEFAULT_DIRS = [
    os.path.join(ROOT, "tests/fixtures/oracles/longbench_metrics/preds"),
    os.path.join(ROOT, "tests/fixtures/oracles/longbench_real/preds"),
]


def same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def timed(cmd, cwd=None, env=None):
    t = time.perf_counter()
    subprocess.run(["taskset", "-c", "0"] + cmd, cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longbench-dir", required=True)
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target/release/longctx"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fuzz", default="difflib", choices=["difflib", "levenshtein"])
    ap.add_argument("dirs", nargs="*", default=DEFAULT_DIRS)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.fuzz == "difflib":
        # fuzzywuzzy uses python-Levenshtein whenever it can import it; hide it.
        shim = tempfile.mkdtemp()
        with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
            f.write("import sys\nsys.modules['Levenshtein'] = None\n")
        env["PYTHONPATH"] = shim + os.pathsep + env.get("PYTHONPATH", "")
    for src in args.dirs:
        for e in (False, True):
            work = tempfile.mkdtemp()
            shutil.copy(os.path.join(args.longbench_dir, "eval.py"), work)
            shutil.copy(os.path.join(args.longbench_dir, "metrics.py"), work)
            pred = os.path.join(work, "pred_e" if e else "pred", "m")
            shutil.copytree(src, pred, ignore=shutil.ignore_patterns("result*.json"))
            ours_dir = tempfile.mkdtemp()
            for name in os.listdir(pred):
                shutil.copy(os.path.join(pred, name), ours_dir)
            py, rs = [], []
            for _ in range(args.runs):
                py.append(timed([sys.executable, "eval.py", "--model", "m"] + (["--e"] if e else []), cwd=work, env=env))
                rs.append(timed([args.longctx, "score", ours_dir, "--fuzz", args.fuzz] + (["--longbench-e"] if e else [])))
                with open(os.path.join(pred, "result.json")) as f:
                    want = json.load(f)
                with open(os.path.join(ours_dir, "result.json")) as f:
                    got = json.load(f)
                assert same(want, got), (src, e, want, got)
            n = sum(1 for name in os.listdir(pred) if name.endswith("jsonl") for _ in open(os.path.join(pred, name)))
            mp, mr = statistics.median(py), statistics.median(rs)
            print(f"{os.path.relpath(src, ROOT)} {'LongBench-E' if e else 'LongBench'} ({n} predictions, "
                  f"fuzz={args.fuzz}): eval.py {mp:.3f}s, longctx {mr:.3f}s, ratio {mp / mr:.1f}x; result.json identical")


if __name__ == "__main__":
    main()
