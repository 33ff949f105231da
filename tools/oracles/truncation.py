"""Token-budget truncation oracle for crates/longctx-context (middle/end/start truncation of a
context to a token budget, as in LongBench's pred.py for "middle").

Run by hand (never by CI), from the repository root, with transformers==4.46.3 and
tokenizers==0.20.3 (pinned in tools/oracles/requirements-cross-encoder.txt; torch is not needed
here) and the tokenizers in assets/tokenizers/ (tools/fetch_assets.sh):
    /work/venv-oracle/bin/python tools/oracles/truncation.py --data-dir DIR
No network: both tokenizers are loaded from their tokenizer.json with
transformers.PreTrainedTokenizerFast(tokenizer_file=..., clean_up_tokenization_spaces=False).
  * llama3_1: assets/tokenizers/llama3_1/tokenizer.json (its post-processor adds <|begin_of_text|>)
  * qwen2_5:  assets/tokenizers/qwen2_5/tokenizer.json (adds nothing)

Writes crates/longctx-context/tests/fixtures/truncation.json:
    {"meta": {...}, "texts": [{"source", "text", "chars"}], "cases": [{"tokenizer", "text_index",
    "budget", "side", "tokens_before", "tokens_after", "truncated", "out"}]}
text_index is a 0-based index into "texts"; chars counts code points; truncated is
tokens_before > budget (out == text otherwise). The algorithm (the Rust implementation's contract) is:

    ids = tok(text).input_ids                       # add_special_tokens=True
    before = len(ids)
    if before <= budget: out = text
    elif side == "middle":                          # LongBench pred.py
        half = budget // 2
        out = tok.decode(ids[:half], skip_special_tokens=True)
              + tok.decode(ids[len(ids) - half:], skip_special_tokens=True)
    else:                                           # "end" keeps the head, "start" keeps the tail
        content = tok(text, add_special_tokens=False).input_ids
        specials = before - len(content)
        keep = min(max(budget - specials, 0), len(content))
        out = tok.decode(content[:keep] if side == "end" else content[len(content) - keep:],
                         skip_special_tokens=True)
    after = len(tok(out).input_ids)

tokens_after can exceed the budget: "middle" keeps budget//2 ids on each side (BOS included in
the head for llama3_1) and re-encodes with BOS; a cut inside a multi-byte character decodes to
U+FFFD; and re-encoding the decoded text may merge differently. meta.over_budget counts those.

Budgets per text: 1, 2, 7, 64, 257, 1000, plus the text's own token count (no truncation, the
boundary) and that count + 1, plus "probe" budgets found by trying every budget below
min(tokens_before, PROBE_MAX): the first PROBE_OVER where some side gives tokens_after > budget and
the first PROBE_FFFD where some side's out contains U+FFFD. Duplicates are dropped; every budget
is run with all three sides. Deterministic: fixed cuts of fixed records, exhaustive probing.
"""
import argparse
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from fixture_io import write_fixture  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "crates", "longctx-context", "tests", "fixtures", "truncation.json")
TOKENIZERS = [("llama3_1", os.path.join(ROOT, "assets", "tokenizers", "llama3_1", "tokenizer.json")),
              ("qwen2_5", os.path.join(ROOT, "assets", "tokenizers", "qwen2_5", "tokenizer.json"))]
BUDGETS = (1, 2, 7, 64, 257, 1000)
SIDES = ("middle", "end", "start")
PROBE_MAX, PROBE_OVER, PROBE_FFFD = 300, 2, 2

# (dataset, 0-based line, start char, end char) of the real texts.
CUTS = [
    ("qasper", 0, 0, 2400),
    ("multi_news", 1, 0, 1600),
    ("trec", 0, 0, 900),
    ("multifieldqa_zh", 0, 0, 1500),
    ("passage_retrieval_zh", 1, 0, 1800),
]
ODD = ("  Leading spaces,\ttabs\t\tand  double  spaces.\r\nWindows line end, then three blank lines\n\n\n"
       "Emoji: 🍕🍕 pizza, 👍🏽 skin tone, family 👨\u200d👩\u200d👧 (ZWJ), flag 🇫🇷, "
       "keycap 1\ufe0f\u20e3, "
       "rare 🪿 goose.\u00a0NBSP\u2003em-space\u3000ideographic-space. Zero\u200bwidth, soft\u00adhyphen, "
       "combining e\u0301 vs é. 中文混合 English 😀 with 日本語テキスト and 한국어. "
       "Math ∑∫√∞ ≠ ≤ ≥, arrows →←, quotes “curly” ‘single’ «guillemets». "
       "Trailing whitespace and a final emoji 🎉   \n\t ")


def load_records(data_dir, name):
    with open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def encode(tok, text, add_special_tokens=True):
    key = (id(tok), text, add_special_tokens)
    if key not in _CACHE:
        _CACHE[key] = tok(text, add_special_tokens=add_special_tokens).input_ids
    return _CACHE[key]


_CACHE = {}


def truncate(tok, text, budget, side):
    ids = encode(tok, text)
    before = len(ids)
    if before <= budget:
        out = text
    elif side == "middle":
        half = budget // 2
        out = (tok.decode(ids[:half], skip_special_tokens=True)
               + tok.decode(ids[len(ids) - half:], skip_special_tokens=True))
    else:
        content = encode(tok, text, add_special_tokens=False)
        specials = before - len(content)
        keep = min(max(budget - specials, 0), len(content))
        out = tok.decode(content[:keep] if side == "end" else content[len(content) - keep:],
                         skip_special_tokens=True)
    after = len(tok(out).input_ids)
    return before, after, before > budget, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, help="official LongBench *.jsonl files")
    args = ap.parse_args()
    assert transformers.__version__ == "4.46.3", transformers.__version__
    assert tokenizers.__version__ == "0.20.3", tokenizers.__version__

    texts = []
    for name, line, a, b in CUTS:
        ctx = load_records(args.data_dir, name)[line]["context"]
        assert len(ctx) >= b, (name, line, len(ctx))
        texts.append({"source": f"{name}.jsonl line {line} context[{a}:{b}]", "text": ctx[a:b]})
    texts.append({"source": "hand-written: emoji, ZWJ, odd whitespace, mixed scripts", "text": ODD})
    for t in texts:
        t["chars"] = len(t["text"])
        assert 300 <= t["chars"] <= 3000, t["source"]

    cases, over = [], []
    for tname, path in TOKENIZERS:
        tok = PreTrainedTokenizerFast(tokenizer_file=path, clean_up_tokenization_spaces=False)
        specials = len(tok("x").input_ids) - len(tok("x", add_special_tokens=False).input_ids)
        assert specials == {"llama3_1": 1, "qwen2_5": 0}[tname], (tname, specials)
        for ti, t in enumerate(texts):
            n = len(encode(tok, t["text"]))
            over_b, fffd_b = [], []
            for b in range(1, min(n, PROBE_MAX)):
                res = [truncate(tok, t["text"], b, side) for side in SIDES]
                if len(over_b) < PROBE_OVER and any(r[1] > b for r in res):
                    over_b.append(b)
                if len(fffd_b) < PROBE_FFFD and any("\ufffd" in r[3] for r in res):
                    fffd_b.append(b)
            budgets = sorted(set(BUDGETS) | {n, n + 1} | set(over_b) | set(fffd_b))
            print(f"  {tname} text {ti}: {t['chars']} chars, {n} tokens, budgets {budgets}")
            for budget in budgets:
                for side in SIDES:
                    before, after, truncated, out = truncate(tok, t["text"], budget, side)
                    row = {"tokenizer": tname, "text_index": ti, "budget": budget, "side": side,
                           "tokens_before": before, "tokens_after": after, "truncated": truncated,
                           "out": out}
                    cases.append(row)
                    if after > budget:
                        over.append(row)
    by_kind = {}
    for r in over:
        key = f"{r['tokenizer']}/{r['side']}"
        by_kind[key] = by_kind.get(key, 0) + 1
    print(f"  tokens_after > budget: {len(over)} cases {by_kind}")
    for r in over[:5]:
        print(f"    {r['tokenizer']} text {r['text_index']} budget {r['budget']} {r['side']}: "
              f"after {r['tokens_after']} out={r['out'][:60]!r}")
    head = {"meta": {
        "tokenizers": {name: os.path.relpath(p, ROOT) for name, p in TOKENIZERS},
        "load": "transformers.PreTrainedTokenizerFast(tokenizer_file=..., clean_up_tokenization_spaces=False)",
        "algorithm": "ids = tok(text).input_ids; before = len(ids); if before <= budget: out = text; "
                     "elif side == 'middle': half = budget // 2; out = tok.decode(ids[:half], "
                     "skip_special_tokens=True) + tok.decode(ids[len(ids)-half:], skip_special_tokens=True); "
                     "else: content = tok(text, add_special_tokens=False).input_ids; specials = before - "
                     "len(content); keep = min(max(budget - specials, 0), len(content)); out = "
                     "tok.decode(content[:keep] if side == 'end' else content[len(content)-keep:], "
                     "skip_special_tokens=True); after = len(tok(out).input_ids)",
        "budgets": "1, 2, 7, 64, 257, 1000, tokens_before, tokens_before + 1, and probe budgets: per "
                   f"(tokenizer, text) the first {PROBE_OVER} budgets below min(tokens_before, {PROBE_MAX}) "
                   f"where some side gives tokens_after > budget and the first {PROBE_FFFD} where some "
                   "side's out contains U+FFFD (deduplicated; all sides for every budget)",
        "over_budget": {"count": len(over), "by_tokenizer_side": by_kind},
        "data": "../shared/data/longbench/<dataset>.jsonl",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }}
    write_fixture(OUT, head, [("texts", texts), ("cases", cases)], ROOT)


if __name__ == "__main__":
    main()
