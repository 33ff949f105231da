"""Write the LongBench records shipped in the repository (run by hand; standard library only).

    python3 tools/make_sample.py --data-dir DIR

DIR holds the official LongBench (v1) files (`<dataset>.jsonl` and `LICENSE`), e.g. the
project's reference copy. Lines are copied byte for byte, in official order.

data/longbench-sample/<dataset>.jsonl: the 3 shortest records (by LongBench `length`) of each
official file, for the demo and the documentation examples.
examples/sample-predictions/<dataset>.jsonl: the baseline predictions of
tests/fixtures/oracles/longbench_real/preds/ for those same records.
tests/data/longbench/<dataset>.jsonl: the first 20 lines of each official file, for the tests
(fixtures that name a line below 20 of the reference copy name the same record here), with
LICENSE and PROVENANCE.md (line counts and sha256 of each file).
"""
import argparse
import hashlib
import json
import os
import shutil

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PER_FILE = 3
TEST_LINES = 20

TEST_PROVENANCE = """\
# LongBench records for the tests

The first {n} records of each official LongBench (v1) file in the project's reference copy, so
that the tests read only the repository. A fixture that names one of the first {n} lines of an
official file (1-based line numbers 1 to {n}, 0-based indices 0 to {last}) names the same record
here.

* Source: THUDM/LongBench (MIT licence, `LICENSE` here, "Copyright (c) 2023 THU-KEG & Zhipu AI");
  the records derive from upstream datasets (MultiNews, Qasper, TREC, and the LongBench authors'
  MultiFieldQA-zh and PassageRetrieval-zh), which carry their own terms.
* Reference copy: `shared/data/longbench/`, kept beside the repository on the project's machines
  (its MANIFEST.md records how each file was obtained and verified). multi_news,
  multifieldqa_zh and passage_retrieval_zh are the complete official files (200 records each),
  copied byte for byte from Zefan-Cai/PyramidKV's `data/LongBench/` (which vendors THUDM's
  files; their mean `length` equals the official per-task averages of LongBench's `task.md`).
  qasper and trec hold official row 0 only, transcribed from fangming3562/spectralKV's
  `data/longbench/` (taken from the Hugging Face `THUDM/LongBench` `data.zip`) with that
  repository's 8 added fields removed; they were not byte-compared with the official archive.
* Selection: the first {n} lines of each `*.jsonl` file there (all of them where a file is
  shorter), copied byte for byte, in official order; `LICENSE` copied unchanged.
* Made by `tools/make_sample.py --data-dir DIR` (DIR: the directory of official files).

| file | lines | sha256 |
|---|---|---|
{rows}
"""


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [l for l in f.read().split("\n") if l]


def write_sample(data_dir, names):
    data_out = os.path.join(ROOT, "data", "longbench-sample")
    pred_out = os.path.join(ROOT, "examples", "sample-predictions")
    os.makedirs(data_out, exist_ok=True)
    os.makedirs(pred_out, exist_ok=True)
    for name in names:
        lines = read_lines(os.path.join(data_dir, name))
        by_len = sorted(range(len(lines)), key=lambda i: (json.loads(lines[i])["length"], i))
        keep = sorted(by_len[:PER_FILE])
        with open(os.path.join(data_out, name), "w", encoding="utf-8") as f:
            for i in keep:
                f.write(lines[i] + "\n")
        preds = read_lines(os.path.join(ROOT, "tests", "fixtures", "oracles", "longbench_real", "preds", name))
        with open(os.path.join(pred_out, name), "w", encoding="utf-8") as f:
            for i in keep:
                f.write(preds[i] + "\n")
    shutil.copyfile(os.path.join(data_dir, "LICENSE"), os.path.join(data_out, "LICENSE"))


def write_test_records(data_dir, names):
    out = os.path.join(ROOT, "tests", "data", "longbench")
    os.makedirs(out, exist_ok=True)
    rows = []
    for name in names:
        with open(os.path.join(data_dir, name), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        head = b"".join(lines[:TEST_LINES])
        if head and not head.endswith(b"\n"):
            head += b"\n"
        with open(os.path.join(out, name), "wb") as f:
            f.write(head)
        n = head.count(b"\n")
        rows.append(f"| `{name}` | {n} | `{hashlib.sha256(head).hexdigest()}` |")
    shutil.copyfile(os.path.join(data_dir, "LICENSE"), os.path.join(out, "LICENSE"))
    with open(os.path.join(out, "PROVENANCE.md"), "w", encoding="utf-8") as f:
        f.write(TEST_PROVENANCE.format(n=TEST_LINES, last=TEST_LINES - 1, rows="\n".join(rows)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True,
                    help="directory of the official LongBench *.jsonl files and their LICENSE")
    args = ap.parse_args()
    names = sorted(n for n in os.listdir(args.data_dir) if n.endswith(".jsonl"))
    if not names:
        ap.error(f"no *.jsonl files in {args.data_dir}")
    write_sample(args.data_dir, names)
    write_test_records(args.data_dir, names)


if __name__ == "__main__":
    main()
