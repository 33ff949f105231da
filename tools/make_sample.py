"""Write the small LongBench sample shipped in the repository (run by hand).

data/longbench-sample/<dataset>.jsonl: the 3 shortest records (by LongBench `length`) of each
official file in ../shared/data/longbench/ (byte-for-byte lines, official order kept).
examples/sample-predictions/<dataset>.jsonl: the baseline predictions of
tests/fixtures/oracles/longbench_real/preds/ for those same records.
"""
import json
import os
import shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHARED = os.path.join(ROOT, "..", "shared", "data", "longbench")
PER_FILE = 3


def main():
    data_out = os.path.join(ROOT, "data", "longbench-sample")
    pred_out = os.path.join(ROOT, "examples", "sample-predictions")
    os.makedirs(data_out, exist_ok=True)
    os.makedirs(pred_out, exist_ok=True)
    for name in sorted(os.listdir(SHARED)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(SHARED, name), encoding="utf-8") as f:
            lines = f.read().split("\n")
        lines = [l for l in lines if l]
        by_len = sorted(range(len(lines)), key=lambda i: (json.loads(lines[i])["length"], i))
        keep = sorted(by_len[:PER_FILE])
        with open(os.path.join(data_out, name), "w", encoding="utf-8") as f:
            for i in keep:
                f.write(lines[i] + "\n")
        with open(os.path.join(ROOT, "tests", "fixtures", "oracles", "longbench_real", "preds", name), encoding="utf-8") as f:
            preds = [l for l in f.read().split("\n") if l]
        with open(os.path.join(pred_out, name), "w", encoding="utf-8") as f:
            for i in keep:
                f.write(preds[i] + "\n")
    shutil.copy(os.path.join(SHARED, "LICENSE"), os.path.join(data_out, "LICENSE"))


if __name__ == "__main__":
    main()
