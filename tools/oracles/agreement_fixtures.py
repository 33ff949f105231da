"""Fixtures for LongBench-Chat judging: judge-agreement statistics from scipy and scikit-learn, and
ratings read from judge replies the way LongAlign's LongBench_Chat/eval.py reads them. Run by hand
(never by CI), with the pins of tools/oracles/requirements-agreement.txt:

    python3 -m venv /tmp/vs && /tmp/vs/bin/pip install -r tools/oracles/requirements-agreement.txt
    /tmp/vs/bin/python tools/oracles/agreement_fixtures.py

It writes tests/fixtures/oracles/agreement.json:
  pairs    rating columns of two judges (seeded draws on 1..10 with many ties, a constant column,
           identical and reversed columns, decimal ratings, 2- and 3-item columns, the 50-case size)
           with scipy.stats.spearmanr(a, b).statistic, scipy.stats.kendalltau(a, b).statistic
           (tau-b), and for integer columns sklearn.metrics.cohen_kappa_score(a, b,
           weights="quadratic") with its default labels and with labels=range(1, 11);
           NaN is written as null
  ratings  judge replies and what eval.py's get_score makes of them (re.findall(r"\\[\\[([^\\]]+)\\]\\]",
           reply)[-1], then the first of re.findall(r"\\d+\\.\\d+|\\d+", ...), then float), null where
           it raises (the script then asks again)
"""
import json
import math
import os
import re
import sys
import warnings

import numpy as np
import scipy
import sklearn
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import cohen_kappa_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def num(x):
    x = float(x)
    return None if math.isnan(x) else x


def official_rating(reply):
    """eval.py's get_score on one reply."""
    try:
        score = re.findall(r"\[\[([^\]]+)\]\]", reply)[-1]
        matches = re.findall(r"\d+\.\d+|\d+", score)
        return float(matches[0])
    except Exception:
        return None


def columns():
    rng = np.random.default_rng(20261203)
    cols = []
    for n in [3, 5, 8, 12, 20, 30, 50, 50, 50]:
        a = rng.integers(1, 11, n)
        # b: a with noise, clipped to the scale (many ties)
        b = np.clip(a + rng.integers(-3, 4, n), 1, 10)
        cols.append((f"noisy_n{n}", a.tolist(), b.tolist()))
    for n in [30, 50]:
        a = rng.integers(1, 11, n)
        b = rng.integers(1, 11, n)
        cols.append((f"independent_n{n}", a.tolist(), b.tolist()))
    a = rng.integers(5, 9, 40).tolist()
    cols.append(("narrow_range_n40", a, rng.integers(4, 10, 40).tolist()))
    cols.append(("constant_a", [7] * 30, rng.integers(1, 11, 30).tolist()))
    cols.append(("constant_both", [5] * 30, [5] * 30))
    x = rng.integers(1, 11, 30).tolist()
    cols.append(("identical", x, list(x)))
    cols.append(("reversed", list(range(1, 11)) * 3, list(range(10, 0, -1)) * 3))
    cols.append(("two_items", [3, 9], [4, 2]))
    cols.append(("sparse_labels", [1, 10, 1, 10, 5, 5, 1, 10] * 4, [1, 10, 10, 1, 5, 1, 5, 10] * 4))
    half = (rng.integers(2, 21, 36) / 2).tolist()
    cols.append(("decimal_ratings", half, (np.clip(np.array(half) + rng.integers(-2, 3, 36) / 2, 1, 10)).tolist()))
    return cols


REPLIES = [
    "The answer is correct and complete. Rating: [[8]]",
    "[[5]] at first, but on reflection: [[7]]",
    "Rating: [[8.5]]",
    "[[Rating: 6/10]]",
    "[[ 9 ]]",
    "No rating here.",
    "Rating: [[]]",
    "Rating: [[ten]]",
    "[[7]] and then [[no number]]",
    "[[10]]",
    "[[3.]]",
    "[[.5]]",
    "Rating: [7]",
    "[[[6]]]",
    "[[1.25 or 2]]",
    "[[0]]",
    "Rating: [[07]]",
    "[[4]]\n\nExplanation with [brackets] inside.",
    "The assistant's answer [[rating]] is 6: [[6]]",
    "[[12 out of 10]]",
]


def main():
    pairs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, a, b in columns():
            row = {"name": name, "a": a, "b": b,
                   "spearman": num(spearmanr(a, b).statistic),
                   "kendall_tau_b": num(kendalltau(a, b).statistic)}
            if all(float(v).is_integer() for v in a + b):
                ai, bi = [int(v) for v in a], [int(v) for v in b]
                row["kappa_quadratic"] = num(cohen_kappa_score(ai, bi, weights="quadratic"))
                row["kappa_quadratic_1_10"] = num(cohen_kappa_score(ai, bi, labels=list(range(1, 11)),
                                                                    weights="quadratic"))
            pairs.append(row)
    ratings = [{"reply": r, "rating": official_rating(r)} for r in REPLIES]
    head = {"meta": {"script": "tools/oracles/agreement_fixtures.py",
                     "versions": {"scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                                  "numpy": np.__version__},
                     "null": "NaN (scipy/sklearn) or a reply eval.py gets no rating from"}}
    path = os.path.join(ROOT, "tests", "fixtures", "oracles", "agreement.json")
    write_fixture(path, head, [("pairs", pairs), ("ratings", ratings)], ROOT)


if __name__ == "__main__":
    main()
