#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Oracle generator for the Rust port of NVIDIA RULER's scorer.

Writes ``tests/fixtures/oracles/ruler_scoring.json``: adversarial prediction lines for all 13
RULER tasks at two lengths, each with RULER's post-processed prediction and per-line score, and
the task scores and null counts that RULER's ``evaluate.py`` computes for each (task, length)
group.

This script contains no copy of RULER's scoring code. It EXECUTES RULER's own files from a
checkout given by ``--ruler-dir``:

* ``scripts/eval/synthetic/constants.py`` (``string_match_all``, ``string_match_part``,
  ``TASKS``), imported with importlib from that path;
* ``scripts/eval/evaluate.py``, loaded as a module with its heavy imports stubbed (``nltk``,
  ``pandas``, ``yaml``, ``tqdm``, ``nemo...manifest_utils``) and ``sys.argv`` set to
  ``--data_dir x`` for its module-level argparse. ``postprocess_pred`` and
  ``run_evaluation_per_task`` are RULER's function objects. The ``read_manifest`` stub reads the
  JSON-lines files this script writes to a temporary directory, as NeMo's does.
* ``scripts/synthetic.yaml`` is read (with a tiny line parser, no PyYAML) only to check the
  task -> base-task mapping.

Only the Python standard library is needed (Python 3.11.7 was used; see the note on ``sum``
below). Usage::

    # export RULER (commit c3f5e3b) from the bare mirror, or use any checkout:
    RULER=/tmp/ruler; mkdir -p "$RULER"
    git -C /work/.mirror/NVIDIA+RULER/repo archive HEAD | tar -x -C "$RULER"
    python3 tools/oracles/ruler_scoring.py --ruler-dir "$RULER"
    #   --ruler-commit C   recorded when --ruler-dir has no .git (default c3f5e3b)
    #   --out PATH         default tests/fixtures/oracles/ruler_scoring.json

A run is deterministic (every random choice comes from ``random.Random("ruler-oracle-v1/...")``).

Python version matters: RULER's metrics use the builtin ``sum`` over floats. Up to Python 3.11
that is a plain left-to-right double addition; Python 3.12 switched to Neumaier compensated
summation. The fixture pins the plain left-to-right behaviour (run with Python <= 3.11) and
``meta.group_notes`` records, per group, what 3.12's ``sum`` would give where it differs.
"""

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import types
import unicodedata
import uuid
import random
from fractions import Fraction
from pathlib import Path

from fixture_io import write_fixture

SEED = "ruler-oracle-v1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "oracles" / "ruler_scoring.json"
DEFAULT_COMMIT = "c3f5e3b"

# RULER's 13 tasks (scripts/synthetic.yaml order) and their base task (the `task:` key there).
TASK_BASE = {
    "niah_single_1": "niah",
    "niah_single_2": "niah",
    "niah_single_3": "niah",
    "niah_multikey_1": "niah",
    "niah_multikey_2": "niah",
    "niah_multikey_3": "niah",
    "niah_multivalue": "niah",
    "niah_multiquery": "niah",
    "vt": "variable_tracking",
    "cwe": "common_words_extraction",
    "fwe": "freq_words_extraction",
    "qa_1": "qa",
    "qa_2": "qa",
}
TASKS_ORDER = list(TASK_BASE)
LENGTHS = (4096, 8192)

# Group sizes: mostly 7/9/11/13 (denominators that make the 2-decimal rounding non-trivial) and
# some 8/16/32 groups whose exact score can end in a 5 at the third decimal (a rounding tie).
GROUP_SIZES = {
    4096: {"niah_single_1": 7, "niah_single_2": 9, "niah_single_3": 11, "niah_multikey_1": 13,
           "niah_multikey_2": 7, "niah_multikey_3": 9, "niah_multivalue": 8,
           "niah_multiquery": 11, "vt": 32, "cwe": 16, "fwe": 9, "qa_1": 13, "qa_2": 32},
    8192: {"niah_single_1": 32, "niah_single_2": 11, "niah_single_3": 13, "niah_multikey_1": 9,
           "niah_multikey_2": 11, "niah_multikey_3": 7, "niah_multivalue": 13,
           "niah_multiquery": 8, "vt": 9, "cwe": 11, "fwe": 32, "qa_1": 7, "qa_2": 13},
}
# Groups redrawn (seeded) until their exact score is a third-decimal tie. "float": also until
# RULER's float result rounds differently from the exact rational (half-even) value, so that a
# port has to reproduce the left-to-right double summation to get it right.
TIE_GROUPS = {
    ("qa_2", 4096): "exact",
    ("niah_single_1", 8192): "exact",
    ("niah_multivalue", 4096): "exact",
    ("niah_multiquery", 8192): "exact",
    ("vt", 4096): "float",
    ("cwe", 4096): "float",
    ("fwe", 8192): "float",
}
MAX_REDRAWS = 5000

# Hand-written lines placed first in their group (the rest of the group is drawn at random).
HAND_LINES = {
    ("qa_1", 4096): [
        ("ISTANBUL", ["İstanbul", "Istanbul", "Constantinople"]),   # via the ASCII alias
        ("İSTANBUL", ["İstanbul"]),            # "i\u0307stanbul" in "i\u0307stanbul"
        ("istanbul", ["İstanbul"]),            # "İ".lower() == "i\u0307": no match
        ("İstanbul", ["Istanbul"]),            # no match the other way round either
        ("STRASSE DES 17. JUNI", ["Straße des 17. Juni"]),  # lower() never maps SS to ß
        ("STRA\u1e9eE DES 17. JUNI", ["Straße des 17. Juni"]),  # ẞ.lower() == ß
    ],
    ("qa_1", 8192): [
        ("ΟΔΥΣΣΈΑΣ", ["Οδυσσέας", "Odysseus", "Ulysses"]),   # final sigma -> ς
        ("ΟΔΥΣΣΈΑΣ's ship", ["Οδυσσέας"]),    # Σ + case-ignorable ' + cased s -> σ
        ("ΟΔΥΣΣΈΑΣ'", ["Οδυσσέας"]),          # Σ + case-ignorable ' + end -> ς
        ("ΣΟΦΟΚΛΗΣ.", ["ΣΟΦΟΚΛΗΣ", "Sophocles"]),
        ("σοφοκλησ", ["ΣΟΦΟΚΛΗΣ"]),           # ref lowers to ...ς
        ("\u212aELVIN", ["Kelvin", "kelvins", "K"]),   # KELVIN SIGN lowers to k
    ],
    ("qa_2", 8192): [
        ("GROSSE FREIHEIT", ["GROẞE FREIHEIT"]),
        ("Große Freiheit", ["GROẞE FREIHEIT"]),
        ("A\u0308rzte ohne Grenzen", ["Ärzte ohne Grenzen"]),  # no normalisation
        ("U.S", ["U.S."]),
        ("\u01c4EMAL BIJEDIĆ", ["ǅemal Bijedić"]),   # Ǆ and ǅ both lower to ǆ
    ],
    ("vt", 8192): [
        ("KİMBO QİXZA TIGER", ["KIMBO", "QIXZA", "TIGER", "ABCDE", "FGHIJ"]),
        ("kimbo qixza tiger abcde fghij", ["KIMBO", "QIXZA", "TIGER", "ABCDE", "FGHIJ"]),
        ("kımbo QIXZAB XTIGERX", ["KIMBO", "QIXZA", "TIGER", "ABCDE", "FGHIJ"]),
    ],
    ("cwe", 8192): [
        (" 1. party 2. house 3. plant 4. open 5. category 6. year 7. steam 8. money 9. page "
         "10. scar", ["art", "use", "ant", "pen", "cat", "ear", "tea", "one", "age", "car"]),
    ],
    ("niah_single_2", 4096): [
        ("\u0661\u0662\u0663\u0664\u0665\u0666\u0667", ["1234567"]),
        ("1 234 567", ["1234567"]),
        ("\x1c\x1d1234567\x1e\x1f", ["1234567"]),
        ("\u200b7654321\u200b", ["7654321"]),
        ("\x85", ["7654321"]),
    ],
    ("niah_single_2", 8192): [
        ("\x00\u3000 7654321 \x00", ["7654321"]),
        ("\x7f", ["7654321"]),
        ("76543\t21", ["7654321"]),
        ("\u00a0\u2003\u3000\u2028", ["7654321"]),
    ],
}

# ---------------------------------------------------------------------------------------------
# loading RULER's own code
# ---------------------------------------------------------------------------------------------

CONSTANTS_REL = "scripts/eval/synthetic/constants.py"
EVALUATE_REL = "scripts/eval/evaluate.py"
YAML_REL = "scripts/synthetic.yaml"


def load_constants(ruler_dir):
    path = ruler_dir / CONSTANTS_REL
    spec = importlib.util.spec_from_file_location("ruler_eval_synthetic_constants", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def nemo_read_manifest(manifest):
    """Stand-in for nemo.collections.asr.parts.utils.manifest_utils.read_manifest: one JSON
    object per line of a UTF-8 file (blank lines skipped)."""
    data = []
    with open(str(manifest), "r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            data.append(json.loads(line))
    return data


def nemo_write_manifest(output_path, target_manifest, ensure_ascii=True):
    with open(str(output_path), "w", encoding="utf-8") as f:
        for d in target_manifest:
            f.write(json.dumps(d, ensure_ascii=ensure_ascii) + "\n")


def load_evaluate(ruler_dir):
    """Loads RULER's scripts/eval/evaluate.py as a module (not as __main__, so main() does not
    run) with its heavy third-party imports replaced by dummy modules."""
    path = ruler_dir / EVALUATE_REL
    stubs = {}

    def stub(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        stubs[name] = m
        return m

    def _no_download(*a, **k):
        raise RuntimeError("ruler_scoring.py: nltk.download must not be reached")

    stub("nltk", data=types.SimpleNamespace(find=lambda *a, **k: "stub"), download=_no_download)
    stub("pandas", DataFrame=None, concat=None)
    stub("yaml", safe_load=None)
    stub("tqdm", tqdm=lambda it, *a, **k: it)
    parent = None
    for part in ("nemo", "nemo.collections", "nemo.collections.asr", "nemo.collections.asr.parts",
                 "nemo.collections.asr.parts.utils"):
        m = stub(part, __path__=[])
        if parent is not None:
            setattr(parent, part.rsplit(".", 1)[1], m)
        parent = m
    mu = stub("nemo.collections.asr.parts.utils.manifest_utils",
              read_manifest=nemo_read_manifest, write_manifest=nemo_write_manifest)
    parent.manifest_utils = mu

    saved_modules = {k: sys.modules.get(k) for k in stubs}
    saved_argv = sys.argv
    sys.modules.update(stubs)
    sys.argv = [str(path), "--data_dir", "x"]
    try:
        spec = importlib.util.spec_from_file_location("ruler_eval_evaluate", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.argv = saved_argv
        for k, v in saved_modules.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    assert mod.postprocess_pred.__code__.co_filename == str(path), "postprocess_pred is not RULER's"
    assert mod.args.data_dir == "x"
    return mod


def yaml_task_bases(ruler_dir):
    """Top-level keys of scripts/synthetic.yaml and their `task:` (a line parser, no PyYAML)."""
    bases, current = {}, None
    for line in (ruler_dir / YAML_REL).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9_]+):\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^  task:\s*([A-Za-z0-9_]+)\s*$", line)
        if m and current is not None:
            bases[current] = m.group(1)
    return bases


def ruler_commit(ruler_dir, fallback):
    if (ruler_dir / ".git").exists():
        out = subprocess.run(["git", "-C", str(ruler_dir), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip(), "git rev-parse HEAD"
    return fallback, "--ruler-commit"


def sha256_file(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------

ADJS = ["vengeful", "abrasive", "quiet", "lethal", "gleaming", "fuzzy", "ancient", "brave",
        "curious", "damp", "elegant", "fragile", "grumpy", "hollow", "icy", "jolly", "keen",
        "lush", "mellow", "noisy", "obsolete", "plucky", "ragged", "shiny", "tacit", "upbeat"]
NOUNS = ["peacock", "anchor", "blizzard", "cactus", "dolphin", "ember", "falcon", "glacier",
         "harbor", "igloo", "jackal", "kettle", "lantern", "meadow", "nectar", "orchid",
         "pebble", "quill", "raven", "saddle", "tundra", "umbrella", "violin", "walrus"]
# cwe words: english words (RULER draws them from english_words.json); several are substrings
# of other words in the list (art/party, use/house, ant/plant, pen/open, ...).
CWE_WORDS = ["art", "party", "use", "house", "ant", "plant", "pen", "open", "cat", "category",
             "ear", "year", "heart", "tea", "steam", "one", "money", "age", "page", "car",
             "scar", "end", "friend", "man", "human", "arm", "farm", "war", "reward", "ice",
             "office", "river", "garden", "window", "silver", "thunder", "candle", "mirror",
             "basket", "ladder", "forest", "pillow", "rocket", "violet", "wagon", "zebra",
             "yellow", "bottle", "castle", "dinner", "engine", "finger", "ginger", "hammer",
             "island", "jacket", "kitten", "lemon", "marble", "needle", "orange", "pepper",
             "rabbit", "saddle", "ticket", "valley", "whisper", "anchor", "blanket", "cotton"]
# (cwe word -> words of the list that contain it)
CWE_SUPERSTRINGS = {w: [v for v in CWE_WORDS if v != w and w in v] for w in CWE_WORDS}

# SQuAD-like answers (qa_1: several aliases) and HotpotQA-like answers (qa_2: one).
QA1_POOL = [
    ["Denver Broncos", "Denver Broncos", "Broncos"],
    ["İstanbul", "Istanbul", "Constantinople"],
    ["Straße des 17. Juni", "Strasse des 17. Juni"],
    ["Οδυσσέας", "Odysseus", "Ulysses"],
    ["U.S.", "United States", "the United States"],
    ["St. Louis", "Saint Louis", "St. Louis, Missouri"],
    ["1,000", "one thousand", "1000"],
    ["Kraków", "Krakow", "Cracow"],
    ["Düsseldorf", "Duesseldorf"],
    ["rock 'n' roll", "rock and roll"],
    ["$3.5 million", "3.5 million"],
    ["C++", "the C++ language"],
    ["50%", "fifty percent", "half"],
    ["Kelvin", "kelvins", "K"],
    ["Ångström", "angstrom"],
    ["ΣΟΦΟΚΛΗΣ", "Sophocles"],
    ["Dr. Jekyll & Mr. Hyde", "Jekyll and Hyde"],
    ["5th century", "the fifth century"],
    ["Æthelred", "Ethelred the Unready"],
    ["Ärzte ohne Grenzen", "Doctors Without Borders", "MSF"],
]
QA2_POOL = [["yes"], ["no"], ["Arthur's Magazine"], ["Chief of Protocol"], ["1,800"],
            ["Mary I of England"], ["Ludwig van Beethoven"], ["GROẞE FREIHEIT"], ["Ünye"],
            ["İzmir"], ["ΚΑΣΤΟΡΙΑ"], ["Greyhound Lines"], ["The Saint"], ["Ålesund"],
            ["Łódź"], ["Ðakovo"], ["ǅemal Bijedić"], ["Miller v. California"],
            ["Eminem (Marshall Mathers)"], ["3,677 km²"]]


def number7(rng):
    return str(rng.randint(1000000, 9999999))


def uuid4(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def vt_name(rng):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))


def fwe_word(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))


def distinct(rng, gen, k, avoid=()):
    out = []
    while len(out) < k:
        v = gen(rng)
        if v not in out and v not in avoid:
            out.append(v)
    return out


def key_word(rng):
    return f"{rng.choice(ADJS)}-{rng.choice(NOUNS)}"


def make_refs(task, rng):
    if task in ("niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multikey_2"):
        return [number7(rng)]
    if task in ("niah_single_3", "niah_multikey_3"):
        return [uuid4(rng)]
    if task in ("niah_multivalue", "niah_multiquery"):
        return distinct(rng, number7, 4)
    if task == "vt":
        return distinct(rng, vt_name, 5)
    if task == "cwe":
        return rng.sample(CWE_WORDS, 10)
    if task == "fwe":
        return distinct(rng, fwe_word, 3)
    if task == "qa_1":
        return list(rng.choice(QA1_POOL))
    if task == "qa_2":
        return list(rng.choice(QA2_POOL))
    raise KeyError(task)


def wrong_like(task, rng, refs):
    """A wrong answer of the same shape as the references."""
    if task in ("niah_single_3", "niah_multikey_3"):
        return uuid4(rng)
    if task.startswith("niah"):
        return distinct(rng, number7, 1, refs)[0]
    if task == "vt":
        return distinct(rng, vt_name, 1, refs)[0]
    if task == "cwe":
        pool = [w for w in CWE_WORDS if w not in refs and not any(r in w for r in refs)]
        return rng.choice(pool)
    if task == "fwe":
        return distinct(rng, fwe_word, 1, refs)[0]
    pool = QA1_POOL if task == "qa_1" else QA2_POOL
    while True:
        cand = rng.choice(pool)
        if not any(r.lower() in c.lower() or c.lower() in r.lower() for r in refs for c in cand):
            return rng.choice(cand)


# ---------------------------------------------------------------------------------------------
# adversarial transforms
# ---------------------------------------------------------------------------------------------

FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
HOMOGLYPH = {"A": "\u0410", "E": "\u0415", "O": "\u041e", "P": "\u0420", "C": "\u0421",
             "a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441"}


def t_kelvin(s):        # KELVIN SIGN lowercases to ASCII k -> still matches
    return s.replace("K", "\u212a").replace("k", "\u212a")


def t_dotted_i(s):      # LATIN CAPITAL I WITH DOT ABOVE lowercases to "i\u0307" -> no match
    return s.replace("I", "\u0130").replace("i", "\u0130")


def t_dotless_i(s):     # LATIN SMALL DOTLESS I stays "ı" -> no match
    return s.replace("i", "\u0131").replace("I", "\u0131")


def t_capital_sharp_s(s):  # ẞ lowercases to ß
    return s.replace("ß", "\u1e9e").upper()


def t_nfd(s):
    return unicodedata.normalize("NFD", s)


def t_fullwidth(s):
    return "".join(FULLWIDTH.get(c, c) for c in s)


def t_homoglyph(s):
    return "".join(HOMOGLYPH.get(c, c) for c in s)


CASE_TRANSFORMS = [
    ("identity", lambda s: s, 10),
    ("upper", str.upper, 4),
    ("lower", str.lower, 4),
    ("title", str.title, 2),
    ("swapcase", str.swapcase, 2),
    ("casefold", str.casefold, 1),
    ("kelvin", t_kelvin, 1),
    ("dotted_I", t_dotted_i, 1),
    ("dotless_i", t_dotless_i, 1),
    ("capital_sharp_s", t_capital_sharp_s, 1),
    ("nfd", t_nfd, 1),
    ("fullwidth", t_fullwidth, 1),
    ("homoglyph", t_homoglyph, 1),
]

# Characters that Python's str.strip() removes (str.isspace), incl. \x1c-\x1f and \x85.
STRIP_WS = [" ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f",
            "\x85", "\xa0", "\u1680", "\u2000", "\u2003", "\u200a", "\u2028", "\u2029", "\u202f",
            "\u205f", "\u3000"]
# Look-alikes that str.strip() keeps (not str.isspace) and the regex does not touch.
NOT_WS = ["\u200b", "\ufeff", "\u180e", "\u2060", "\x7f", "\x80", "\x9f"]
# Controls \x00-\x1f that are not whitespace: postprocess_pred turns them into "\n".
CONTROLS = ["\x00", "\x01", "\x02", "\x07", "\x08", "\x0e", "\x10", "\x1a", "\x1b"] + \
           ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f"]


def ws_run(rng, lo=1, hi=4):
    return "".join(rng.choice(STRIP_WS) for _ in range(rng.randint(lo, hi)))


def weighted(rng, items):
    total = sum(w for _, _, w in items)
    x = rng.uniform(0, total)
    for name, fn, w in items:
        x -= w
        if x <= 0:
            return name, fn
    return items[-1][0], items[-1][1]


# ---------------------------------------------------------------------------------------------
# prediction lines
# ---------------------------------------------------------------------------------------------

def join_answers(task, rng, toks, key):
    """Realistic model continuation of RULER's answer prefix for the given answer tokens."""
    kind = "uuid" if task in ("niah_single_3", "niah_multikey_3") else "number"
    if not toks:
        return rng.choice(["I could not find it in the text.", "None.", "N/A",
                           "There is no such value mentioned in the provided text."])
    if task.startswith("niah"):
        if len(toks) == 1:
            return rng.choice([
                "{0}", " {0}", "{0}.",
                f"The special magic {kind} for {key} mentioned in the provided text is {{0}}.",
                f"The special magic {kind}s for {key} mentioned in the provided text are {{0}}",
                "is: {0}", "**{0}**", "{0}\n\nExplanation: it appears once in the text.",
            ]).format(toks[0])
        style = rng.randrange(4)
        if style == 0:
            return ", ".join(toks[:-1]) + ", and " + toks[-1] + "."
        if style == 1:
            return "\n".join(f"{i + 1}. {t}" for i, t in enumerate(toks))
        if style == 2:
            return f"The special magic {kind}s for {key} mentioned in the provided text are: " \
                   + ", ".join(toks)
        return " ".join(toks)
    if task == "vt":
        style = rng.randrange(3)
        if style == 0:
            return " ".join(toks)
        if style == 1:
            return ", ".join(toks) + "."
        return " ".join(f"VAR {t}" for t in toks) + "\n\nQuestion: Find all variables"
    if task == "cwe":
        style = rng.randrange(3)
        if style == 0:
            return " " + " ".join(f"{i + 1}. {t}" for i, t in enumerate(toks))
        if style == 1:
            return ", ".join(toks)
        return "\n".join(f"{i + 1}. {t}" for i, t in enumerate(toks))
    if task == "fwe":
        style = rng.randrange(3)
        if style == 0:
            return " " + ", ".join(toks)
        if style == 1:
            return " ".join(f"'{t}'" for t in toks) + " ...."
        return "1. " + "\n2. ".join(toks)
    # qa
    return rng.choice(["{0}", " {0}", "{0}.", "The answer is {0}.", "{0}\n\nQuestion: Who",
                       "\"{0}\"", "({0})", "Answer: {0}"]).format(" / ".join(toks))


SPECIAL_TURN = [0]


def build_pred(task, rng, refs):
    """Returns (pred, scenario-name)."""
    r = rng.random()
    # whole-prediction special cases (~12%), taken in turn so that every one occurs
    if r < 0.12:
        SPECIAL_TURN[0] += 1
        return [
            ("", "empty"),
            (" ", "ws_space"),
            ("\u3000\xa0\u2003", "ws_unicode"),
            ("\n\n\r\n", "ws_newlines"),
            ("\x1c\x1d\x1e\x1f", "ws_info_separators"),
            ("\x85\u2028\u2029", "ws_nel_ls_ps"),
            ("\x00", "ctrl_nul"),
            ("\x00\x01\x1b\x1f", "ctrl_only"),
            ("\t\x00 \x1b\n\xa0", "ctrl_ws_mix"),
            ("\x7f", "del_only"),
            ("\u200b", "zwsp_only"),
            (" \x7f\x85 ", "del_nel"),
        ][SPECIAL_TURN[0] % 12]
    key = key_word(rng)
    n = len(refs)
    # which references appear
    cov = rng.random()
    if task.startswith("qa"):
        if cov < 0.55:
            chosen = [rng.choice(refs)]
        elif cov < 0.75:
            chosen = [wrong_like(task, rng, refs)]
        else:
            chosen = []
    else:
        if cov < 0.4:
            chosen = list(refs)
        elif cov < 0.8:
            k = rng.randint(1, max(1, n - 1))
            chosen = rng.sample(refs, k)
            chosen += [wrong_like(task, rng, refs) for _ in range(rng.randint(0, 2))]
            rng.shuffle(chosen)
        else:
            chosen = [wrong_like(task, rng, refs) for _ in range(rng.randint(0, n))]
    scen = []
    toks = []
    for t in chosen:
        name, fn = weighted(rng, CASE_TRANSFORMS)
        if name != "identity":
            scen.append(name)
        t = fn(t)
        x = rng.random()
        if x < 0.06:          # reference inside a longer token
            if task == "cwe" and CWE_SUPERSTRINGS.get(t):
                t = rng.choice(CWE_SUPERSTRINGS[t])
            elif task.startswith("qa"):
                t = t + rng.choice(["s", "ian", "-based"])
            else:
                t = rng.choice(["9", "X", "x", "0"]) + t + rng.choice(["3", "Q", "q", ""])
            scen.append("superstring")
        elif x < 0.11 and len(t) > 2:   # control / look-alike char inside the reference
            i = rng.randrange(1, len(t))
            t = t[:i] + rng.choice(CONTROLS + ["\x7f", "\x85", "\u2028", "\xa0", "\u200b"]) + t[i:]
            scen.append("char_inside_ref")
        elif x < 0.30 and task.startswith("qa") and any(p in t for p in ".,'&$%"):
            t = re.sub(r"[.,'&$%]", "", t)
            scen.append("punct_removed")
        elif x < 0.40 and task.startswith("qa"):
            t = t + rng.choice([".", ",", "!", "?", ";"])
            scen.append("punct_added")
        toks.append(t)
    if task == "cwe" and toks and rng.random() < 0.6:   # superstrings of missing words
        missing = [w for w in refs if w not in chosen and CWE_SUPERSTRINGS.get(w)]
        if missing:
            toks.append(rng.choice(CWE_SUPERSTRINGS[rng.choice(missing)]))
            scen.append("superstring_of_missing")
    pred = join_answers(task, rng, toks, key)
    # decorations
    if rng.random() < 0.45:
        pred = ws_run(rng) + pred
        scen.append("lead_ws")
    if rng.random() < 0.45:
        pred = pred + ws_run(rng)
        scen.append("trail_ws")
    if rng.random() < 0.12:
        pred = rng.choice(NOT_WS) + pred
        scen.append("lead_not_ws")
    if rng.random() < 0.12:
        pred = pred + rng.choice(NOT_WS)
        scen.append("trail_not_ws")
    if rng.random() < 0.15:
        pred = rng.choice(CONTROLS) + ws_run(rng, 0, 2) + pred
        scen.append("lead_ctrl")
    if rng.random() < 0.15:
        pred = pred + ws_run(rng, 0, 2) + rng.choice(CONTROLS)
        scen.append("trail_ctrl")
    if rng.random() < 0.2 and " " in pred:
        idx = [i for i, c in enumerate(pred) if c == " "]
        for i in rng.sample(idx, min(len(idx), rng.randint(1, 3))):
            pred = pred[:i] + rng.choice(CONTROLS) + pred[i + 1:]
        scen.append("ctrl_for_space")
    if rng.random() < 0.08:
        i = rng.randrange(len(pred) + 1)
        pred = pred[:i] + rng.choice(["\x7f", "\x85", "\u2028", "\x80"]) + pred[i:]
        scen.append("del_nel_inside")
    if rng.random() < 0.07:
        pred = pred + rng.choice([" Ä", " Straße", " ΟΔΟΣ", " İ", " ǅ"])
        scen.append("non_ascii_tail")
    if not scen:
        scen.append("plain")
    return pred, "+".join(sorted(set(scen)))


def exact_line(metric_name, post, refs):
    """Exact rational per-line score (for the redraw criterion and notes only)."""
    hits = [r.lower() in post.lower() for r in refs]
    if metric_name == "string_match_all":
        return Fraction(sum(hits), len(refs))
    return Fraction(1 if any(hits) else 0)


def float_round_half_even_exact(q):
    """Round the exact rational q to 2 decimals, ties to even (what 'mathematically exact'
    rounding would give)."""
    scaled = q * 100
    fl = math.floor(scaled)
    rem = scaled - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    return Fraction(fl, 100)


def neumaier_sum(values):
    """Python 3.12+'s builtin sum over floats (Neumaier compensated summation)."""
    f, c = 0.0, 0.0
    for x in values:
        t = f + x
        if abs(f) >= abs(x):
            c += (f - t) + x
        else:
            c += (x - t) + f
        f = t
    if c and math.isfinite(c):
        f += c
    return f


def per_line_float(metric_name, post, refs):
    # same expression as RULER's metrics, per line (used only for notes)
    if metric_name == "string_match_all":
        return sum([1.0 if r.lower() in post.lower() else 0.0 for r in refs]) / len(refs)
    return max([1.0 if r.lower() in post.lower() else 0.0 for r in refs])


def char_table(postprocess_pred):
    cps = list(range(0x00, 0x21)) + [0x7f] + list(range(0x80, 0xa1)) + \
        [0x1680, 0x180e] + list(range(0x2000, 0x200c)) + \
        [0x2028, 0x2029, 0x202f, 0x205f, 0x2060, 0x3000, 0xfeff]
    rows = []
    for cp in cps:
        c = chr(cp)
        rows.append({"cp": f"U+{cp:04X}", "char": c, "isspace": c.isspace(),
                     "post_wrapped": postprocess_pred(c + "a" + c + "b" + c, {}),
                     "post_alone": postprocess_pred(c, {})})
    return rows


def lower_table():
    samples = ["İ", "I", "ı", "ẞ", "ß", "SS", "\u212a", "\u212b", "Ä", "A\u0308", "ǅ", "Ǆ",
               "ΟΔΟΣ", "ΟΔΟΣ.", "ΟΔΟΣx", "ΣΟΦΟΚΛΗΣ", "Σ", "AΣ", "AΣ1", "AΣb", "A\u0345Σ",
               "ΑΣ\u0301", "Ω", "\u2126", "Ⅻ", "Ⓐ", "ＡＢＣ", "Ꭰ", "ꭰ", "Ǳ", "ǲ", "ﬀ", "ŉ", "Ǆ"]
    out = []
    for s in samples:
        if not any(o["s"] == s for o in out):
            out.append({"s": s, "lower": s.lower()})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ruler-dir", required=True, type=Path,
                   help="a RULER checkout (e.g. `git -C /work/.mirror/NVIDIA+RULER/repo archive "
                        "HEAD | tar -x -C DIR`)")
    p.add_argument("--ruler-commit", default=DEFAULT_COMMIT,
                   help="commit recorded when --ruler-dir has no .git (default %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args()
    ruler_dir = a.ruler_dir.resolve()

    constants = load_constants(ruler_dir)
    evaluate = load_evaluate(ruler_dir)
    postprocess_pred = evaluate.postprocess_pred
    bases = yaml_task_bases(ruler_dir)
    assert bases == TASK_BASE, f"synthetic.yaml task mapping changed: {bases}"
    commit, commit_from = ruler_commit(ruler_dir, a.ruler_commit)

    def task_config(task):
        # as evaluate.main(): the yaml entry updated with TASKS[base] from constants.py
        cfg = {"task": TASK_BASE[task], "args": {}}
        cfg.update(constants.TASKS[TASK_BASE[task]])
        return cfg

    lines, groups, notes = [], [], []
    scen_count = {}
    tmp = tempfile.mkdtemp(prefix="ruler_oracle_")
    try:
        for length in LENGTHS:
            for task in TASKS_ORDER:
                cfg = task_config(task)
                metric = cfg["metric_fn"]
                metric_name = metric.__name__
                assert metric is getattr(constants, metric_name)
                n = GROUP_SIZES[length][task]
                rng = random.Random(f"{SEED}/{task}/{length}")
                want = TIE_GROUPS.get((task, length))
                for attempt in range(MAX_REDRAWS):
                    rows = [(pr, list(rf), "hand") for pr, rf in HAND_LINES.get((task, length), [])]
                    for i in range(n - len(rows)):
                        refs = make_refs(task, rng)
                        pred, scen = build_pred(task, rng, refs)
                        rows.append((pred, refs, scen))
                    posts = [postprocess_pred(pr, cfg) for pr, _, _ in rows]
                    exact = sum((exact_line(metric_name, po, rf) for po, (_, rf, _) in
                                 zip(posts, rows)), Fraction(0)) / n * 100
                    unrounded = sum([per_line_float(metric_name, po, rf) for po, (_, rf, _) in
                                     zip(posts, rows)]) / n * 100
                    is_tie = (exact * 1000).denominator == 1 and (exact * 1000).numerator % 10 == 5
                    differs = round(unrounded, 2) != float(float_round_half_even_exact(exact))
                    if want is None:
                        break
                    if want == "exact" and is_tie and 0 < exact < 100:
                        break
                    if want == "float" and is_tie and differs:
                        break
                else:
                    raise SystemExit(f"no draw satisfied {want} for {task}/{length}")

                # RULER's own per-task evaluation on a JSON-lines file
                fpath = os.path.join(tmp, f"{task}-{length}.jsonl")
                with open(fpath, "w", encoding="utf-8", newline="\n") as f:
                    for i, (pred, refs, _) in enumerate(rows):
                        f.write(json.dumps({"index": i, "input": f"<{task} prompt {i}>",
                                            "outputs": refs, "pred": pred,
                                            "others": {"id": i}, "length": length},
                                           ensure_ascii=True) + "\n")
                score, nulls, predicts, indices = evaluate.run_evaluation_per_task(
                    task_config=cfg, predictions_file=fpath)
                assert predicts == posts and indices == list(range(n))
                assert score == metric(posts, [rf for _, rf, _ in rows])
                assert nulls == f"{sum(len(x) == 0 for x in posts)}/{n}"
                assert 0.0 <= score <= 100.0
                for (pred, refs, scen), post in zip(rows, posts):
                    line_score = metric([post], [refs])
                    assert 0.0 <= line_score <= 100.0
                    lines.append({"task": task, "length": length, "pred": pred, "outputs": refs,
                                  "post": post, "score": line_score})
                    for s in scen.split("+"):
                        scen_count[s] = scen_count.get(s, 0) + 1
                groups.append({"task": task, "length": length, "score": score, "nulls": nulls,
                               "n": n})
                py312 = round(neumaier_sum([per_line_float(metric_name, po, rf) for po, (_, rf, _)
                                            in zip(posts, rows)]) / n * 100, 2)
                alt_mul_first = round(sum([per_line_float(metric_name, po, rf) for po, (_, rf, _)
                                           in zip(posts, rows)]) * 100 / n, 2)
                exact_he = float(float_round_half_even_exact(exact))
                note = {"task": task, "length": length, "metric": metric_name,
                        "exact": f"{exact.numerator}/{exact.denominator}",
                        "unrounded": unrounded, "score": score,
                        "exact_tie": is_tie,
                        "exact_half_even": exact_he,
                        "py312_sum": py312, "sum_times_100_div_n": alt_mul_first}
                if want:
                    note["redraws"] = attempt
                if want or is_tie or py312 != score or alt_mul_first != score or exact_he != score:
                    notes.append(note)
    finally:
        for fn in os.listdir(tmp):
            os.remove(os.path.join(tmp, fn))
        os.rmdir(tmp)

    # checks
    assert len(lines) >= 260, len(lines)
    assert {(g["task"], g["length"]) for g in groups} == {(t, l) for t in TASKS_ORDER
                                                          for l in LENGTHS}
    assert sum(1 for x in notes if x["exact_tie"]) >= 5

    head = {
        "description": "NVIDIA RULER scoring oracle: postprocess_pred (scripts/eval/evaluate.py) "
                       "and string_match_all / string_match_part (scripts/eval/synthetic/"
                       "constants.py), executed from a RULER checkout by "
                       "tools/oracles/ruler_scoring.py",
        "ruler": {"repo": "https://github.com/NVIDIA/RULER", "commit": commit,
                  "commit_from": commit_from,
                  "files_sha256": {rel: sha256_file(ruler_dir / rel)
                                   for rel in (CONSTANTS_REL, EVALUATE_REL, YAML_REL)}},
        "python": sys.version.split()[0],
        "seed": SEED,
        "task_base": TASK_BASE,
        "metric": {b: constants.TASKS[b]["metric_fn"].__name__ for b in constants.TASKS},
        "line_fields": {
            "post": "postprocess_pred(pred, task_config)",
            "score": "metric_fn([post], [outputs]) (RULER rounds to 2 decimals)",
        },
        "group_fields": {
            "score": "metric_fn(posts, outputs) over the group's lines in file order, as "
                     "run_evaluation_per_task computes it (computed by calling it)",
            "nulls": "f\"{sum(len(p) == 0 for p in posts)}/{n}\"",
        },
        "chars_fields": {
            "isspace": "str.isspace(), i.e. whether str.strip() removes the character",
            "post_wrapped": "postprocess_pred(c + 'a' + c + 'b' + c)",
            "post_alone": "postprocess_pred(c)",
        },
        "lower_fields": {"lower": "s.lower() (CPython full lowercase mapping, Final_Sigma)"},
        "meta": {
            "lines": len(lines),
            "scenario_counts": dict(sorted(scen_count.items())),
            "group_notes_fields": {
                "exact": "exact rational task score (100 * sum of per-line fractions / n)",
                "unrounded": "RULER's float before round(): sum(per-line floats) / n * 100 "
                             "(left-to-right sum, Python <= 3.11)",
                "exact_tie": "exact * 1000 is an integer ending in 5",
                "exact_half_even": "exact rounded to 2 decimals, ties to even",
                "py312_sum": "the score with Python 3.12+'s compensated sum()",
                "sum_times_100_div_n": "round(sum * 100 / n, 2) (other operation order)",
                "redraws": "how many seeded redraws the tie criterion needed",
            },
            "group_notes": notes,
        },
        "chars": char_table(postprocess_pred),
        "lower": lower_table(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_fixture(a.out, head, [("lines", lines), ("groups", groups)], REPO_ROOT, ensure_ascii=True)
    size = a.out.stat().st_size
    print(f"({len(notes)} group notes, ruler commit {commit})")
    assert size < 300_000, size


if __name__ == "__main__":
    main()
