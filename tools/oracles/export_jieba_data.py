"""Export jieba 0.42.1's segmentation data for longctx's Rust port of `jieba.cut`.

Writes, under crates/longctx-bench/data/jieba/:
  dict.txt.gz  - the default dictionary (jieba/dict.txt) as jieba's `gen_pfdict` reads it:
                 a first line "total N" (the sum of all frequencies, duplicates included),
                 then one "word freq" line per distinct word (the last frequency of a
                 duplicated word wins, as in jieba), sorted by the words' UTF-8 bytes so that
                 the Rust side can binary-search it without building a hash map; POS tags
                 are dropped.
  hmm.tsv.gz   - finalseg's HMM, one "kind\tfrom\tto\tprob" line per number: kind "start"
                 (to empty), "trans", or "emit" (to = the character); floats written with
                 repr() so that they parse back to the same doubles.

Run by hand (never by CI):  pip install -r tools/oracles/requirements.txt
                            python3 tools/oracles/export_jieba_data.py
jieba is MIT licensed; its dictionary and HMM model ship with the PyPI package.
"""
import gzip
import os
import sys

import jieba
from jieba.finalseg import prob_emit, prob_start, prob_trans

assert jieba.__version__ == "0.42.1", jieba.__version__
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "longctx-bench", "data", "jieba")


def main():
    os.makedirs(OUT, exist_ok=True)
    src = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    freq, total = {}, 0
    with open(src, "rb") as f:
        for raw in f:
            line = raw.strip().decode("utf-8")
            word, n = line.split(" ")[:2]
            freq[word] = int(n)
            total += int(n)
    assert all(" " not in w and "\t" not in w and "\n" not in w for w in freq)
    words = sorted(freq, key=lambda w: w.encode("utf-8"))
    lines = [f"total {total}\n"] + [f"{w} {freq[w]}\n" for w in words]
    # mtime=0 keeps the archive byte-identical between runs.
    with gzip.GzipFile(os.path.join(OUT, "dict.txt.gz"), "wb", mtime=0) as g:
        g.write("".join(lines).encode("utf-8"))
    rows = [f"start\t{s}\t\t{p!r}\n" for s, p in sorted(prob_start.P.items())]
    rows += [f"trans\t{a}\t{b}\t{p!r}\n" for a, t in sorted(prob_trans.P.items()) for b, p in sorted(t.items())]
    for s, e in sorted(prob_emit.P.items()):
        for ch, p in sorted(e.items()):
            assert len(ch) == 1 and ch not in "\t\n", repr(ch)
            rows.append(f"emit\t{s}\t{ch}\t{p!r}\n")
    with gzip.GzipFile(os.path.join(OUT, "hmm.tsv.gz"), "wb", mtime=0) as g:
        g.write("".join(rows).encode("utf-8"))
    print(f"{len(lines)} dictionary lines; emit sizes", {k: len(v) for k, v in prob_emit.P.items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
