"""Export jieba 0.42.1's segmentation data for longctx's Rust port of `jieba.cut`.

Writes, under crates/longctx-bench/data/jieba/:
  dict.txt.gz  - the default dictionary (jieba/dict.txt) as "word freq" lines, in the original
                 order (jieba keeps the last frequency of a duplicated word but adds all of them
                 to the total, so order and duplicates are kept); the POS tags are dropped.
  hmm.json.gz  - finalseg's HMM: {"start": {S: p}, "trans": {S: {S: p}}, "emit": {S: {char: p}}},
                 floats written with repr() so that they parse back to the same doubles.

Run by hand (never by CI):  pip install -r tools/oracles/requirements.txt
                            python3 tools/oracles/export_jieba_data.py
jieba is MIT licensed; its dictionary and HMM model ship with the PyPI package.
"""
import gzip
import json
import os
import sys

import jieba
from jieba.finalseg import prob_emit, prob_start, prob_trans

assert jieba.__version__ == "0.42.1", jieba.__version__
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "longctx-bench", "data", "jieba")


def main():
    os.makedirs(OUT, exist_ok=True)
    src = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    lines = []
    with open(src, "rb") as f:
        for raw in f:
            line = raw.strip().decode("utf-8")
            word, freq = line.split(" ")[:2]
            lines.append(f"{word} {int(freq)}\n")
    # mtime=0 keeps the archive byte-identical between runs.
    with gzip.GzipFile(os.path.join(OUT, "dict.txt.gz"), "wb", mtime=0) as g:
        g.write("".join(lines).encode("utf-8"))
    model = {"start": prob_start.P, "trans": prob_trans.P, "emit": prob_emit.P}
    text = json.dumps(model, ensure_ascii=False, sort_keys=True)
    with gzip.GzipFile(os.path.join(OUT, "hmm.json.gz"), "wb", mtime=0) as g:
        g.write(text.encode("utf-8"))
    print(f"{len(lines)} dictionary lines; emit sizes", {k: len(v) for k, v in prob_emit.P.items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
