"""Cross-encoder (reranker) oracle for crates/longctx-context: a tiny random-weight
BertForSequenceClassification and the logits that sentence-transformers' CrossEncoder and plain
transformers give it for (query, passage) pairs.

Run by hand (never by CI), from the repository root, with the pins of
tools/oracles/requirements-cross-encoder.txt and the MiniLM tokenizer in assets/minilm/
(tools/fetch_assets.sh):
    /work/venv-oracle/bin/python tools/oracles/cross_encoder.py --data-dir DIR
No network: everything is loaded from local directories on the CPU. Writes, under
crates/longctx-context/tests/fixtures/:

  * cross_encoder_tiny/: config.json + model.safetensors of a BertForSequenceClassification with
    num_labels 1, vocab 30522, hidden 8, 2 heads, 2 layers, intermediate 16, 512 positions,
    type_vocab 2, exact (erf) gelu, layer_norm_eps 1e-12. Every weight is drawn from a seeded
    torch.Generator, scaled per tensor (weight_std) so that logits differ clearly between inputs,
    rounded to float16 and stored as float16 under the standard names (bert.embeddings.*,
    bert.encoder.layer.N.*, bert.pooler.dense.*, classifier.*). Both scorers load it in float32.
    The tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    vocab.txt: uncased WordPiece, model_max_length 512) are copied from assets/minilm/.
  * cross_encoder.json: {"meta", "cases": [{"name", "query", "passage", "n_tokens_untruncated",
    "input_ids", "token_type_ids", "logit"}]}. input_ids/token_type_ids are the pair encoding
    without padding ([CLS] query [SEP] passage [SEP], truncation="longest_first" to 512);
    n_tokens_untruncated is that length without truncation. logit is
        CrossEncoder(dir, max_length=512, device="cpu").predict(pairs,
                     activation_fct=torch.nn.Identity())
    for all pairs in one batch (batch_size 32, so padded to the longest pair). The script checks it
    against plain transformers on the same padded batch:
        features = tokenizer(queries, passages, padding=True, truncation="longest_first",
                             max_length=512, return_tensors="pt")
        model(**features).logits
    and against each pair run alone without padding; meta.agreement records the largest
    absolute differences. (CrossEncoder strips each text; the cases avoid leading/trailing
    whitespace that would matter, and the script asserts the token ids are the same both ways.)
    An empty passage gives [CLS] query [SEP] [SEP] (the pair's [SEP] has token type 1), an empty
    query [CLS] [SEP] passage [SEP]: that is the batch call's encoding, which CrossEncoder uses.
    (transformers' single-pair call tokenizer(q, "") would treat "" as no pair and drop the second
    [SEP].)

Deterministic: weights from a fixed seed, fixed cuts of fixed LongBench records, CPU float32.
"""
import argparse
import json
import os
import shutil

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported; everything is local
import safetensors  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, \
    BertForSequenceClassification  # noqa: E402

from fixture_io import f16_random_weights, write_fixture  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURES = os.path.join(ROOT, "crates", "longctx-context", "tests", "fixtures")
MODEL_OUT = os.path.join(FIXTURES, "cross_encoder_tiny")
CASES_OUT = os.path.join(FIXTURES, "cross_encoder.json")
MINILM = os.path.join(ROOT, "assets", "minilm")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MAX_LENGTH = 512
WEIGHT_SEED = 20240617  # picked among 20240611..20240620 for the widest logit spread
CONFIG = dict(
    vocab_size=30522,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
    num_labels=1,
    id2label={0: "LABEL_0"},
    label2id={"LABEL_0": 0},
    architectures=["BertForSequenceClassification"],
)


def weight_std(name, shape):
    """Standard deviation of each tensor's draw (LayerNorm weights are 1 + draw)."""
    if name.endswith("word_embeddings.weight"):
        return 1.0
    if name.endswith("position_embeddings.weight"):
        return 0.5
    if name.endswith("token_type_embeddings.weight"):
        return 0.5
    if "LayerNorm" in name:
        return 0.2 if name.endswith("weight") else 0.1
    if name.startswith("classifier"):
        return 1.5 if name.endswith("weight") else 0.2
    if name.endswith(".bias"):
        return 0.1
    fan_in = shape[1]
    if any(k in name for k in ("query", "key")):
        return 3.0 / fan_in**0.5  # peaky attention, so that long inputs do not all average out
    return 2.0 / fan_in**0.5


def build_model():
    cfg = BertConfig(**CONFIG)
    model = BertForSequenceClassification(cfg).eval()
    model = f16_random_weights(model, WEIGHT_SEED, weight_std)
    if os.path.isdir(MODEL_OUT):
        shutil.rmtree(MODEL_OUT)
    os.makedirs(MODEL_OUT)
    model.save_pretrained(MODEL_OUT, safe_serialization=True)
    for fn in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(MINILM, fn), os.path.join(MODEL_OUT, fn))
    for fn in os.listdir(MODEL_OUT):
        os.chmod(os.path.join(MODEL_OUT, fn), 0o644)
    with safe_open(os.path.join(MODEL_OUT, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
        assert all(f.get_tensor(n).dtype == torch.float16 for n in names)
    assert "classifier.weight" in names and "bert.pooler.dense.weight" in names, names
    assert all(n.startswith(("bert.embeddings.", "bert.encoder.layer.", "bert.pooler.dense.", "classifier."))
               for n in names), names
    size = sum(os.path.getsize(os.path.join(MODEL_OUT, fn)) for fn in os.listdir(MODEL_OUT))
    print(f"wrote {os.path.relpath(MODEL_OUT, ROOT)}/ ({size} bytes: {sorted(os.listdir(MODEL_OUT))})")
    return names


def load_records(data_dir, name):
    with open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def n_tokens(tok, text):
    """Tokens of a single text without [CLS]/[SEP]."""
    return len(tok(text, add_special_tokens=False)["input_ids"])


def prefix_with_tokens(tok, text, target):
    """Shortest character prefix of `text` with exactly `target` tokens (no specials), ending
    at a word end (the next character is whitespace or the text ends)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if n_tokens(tok, text[:mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    for end in range(lo, len(text) + 1):
        if n_tokens(tok, text[:end]) == target and (end == len(text) or text[end].isspace()):
            return text[:end]
    raise ValueError(f"no prefix with {target} tokens")


def build_cases(tok, data):
    qasper = data["qasper"][0]
    news = data["multi_news"][0]["context"]
    trec = data["trec"][0]
    mfz = data["multifieldqa_zh"][0]
    prz = data["passage_retrieval_zh"][0]
    q_fr = "What is the capital of France?"
    cases = [
        ("en_relevant", q_fr, "Paris is the capital and most populous city of France."),
        ("en_irrelevant", q_fr, "The mitochondria is the powerhouse of the cell."),
        ("en_identical", q_fr, q_fr),
        ("en_one_word", "fox", "dog"),
        ("en_numbers_punct", "How much did revenue rise in 2023?",
         "In 2023, revenue rose 12.5% to $3,456,789.01 (vs. 1e-3); call +1-800-555-0199 or 0x1F!!!"),
        ("en_accents_emoji_unk", "Café crème naïve résumé?",
         "I love pizza 🍕 and cats 🐱! Müller & Söhne GmbH, Straße, Ångström, Dvořák 👨\u200d👩\u200d👧"),
        ("en_inner_whitespace", "tabs\tand\nnewlines", "several   spaces\t\ttabs\n\n\nand\r\nCRLF inside"),
        ("en_qasper_chunk", qasper["input"], qasper["context"][2000:2400]),
        ("zh_multifieldqa", mfz["input"], mfz["context"][:150]),
        ("zh_passage_retrieval", prz["input"][:120], prz["context"][:200]),
        ("mixed_en_query_zh_passage", "Which university hosted the annual meeting?", mfz["context"][150:300]),
        ("empty_passage", q_fr, ""),
        ("empty_query", "", "Paris is the capital and most populous city of France."),
    ]
    # Pairs longer than 512 tokens (longest_first truncation).
    q_short = qasper["input"]
    n_q = n_tokens(tok, q_short)
    cases += [
        ("exactly_512", q_short, prefix_with_tokens(tok, qasper["context"], MAX_LENGTH - 3 - n_q)),
        ("exactly_513", q_short, prefix_with_tokens(tok, qasper["context"][3000:], MAX_LENGTH - 2 - n_q)),
        ("long_passage", q_short, qasper["context"][9000:13000]),
        ("long_query_long_passage", prefix_with_tokens(tok, qasper["context"][6000:], 350), news[:3000]),
        ("long_query_short_passage", prefix_with_tokens(tok, trec["context"], 520),
         "Type: Location. The first golf course in the United States was in Yonkers, New York."),
        ("long_query_empty_passage", prefix_with_tokens(tok, news[3000:], 600), ""),
        ("equal_long_300_300", prefix_with_tokens(tok, news, 300),
         prefix_with_tokens(tok, qasper["context"], 300)),
        ("zh_long_passage", mfz["input"], mfz["context"][:1500]),
    ]
    return cases


def versions():
    return {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, help="official LongBench *.jsonl files")
    args = ap.parse_args()
    assert sentence_transformers.__version__ == "3.3.1", sentence_transformers.__version__
    assert transformers.__version__ == "4.46.3", transformers.__version__
    torch.manual_seed(0)
    torch.set_num_threads(1)  # same reduction order on every machine

    names = build_model()
    data = {n: load_records(args.data_dir, n)
            for n in ("multi_news", "multifieldqa_zh", "passage_retrieval_zh", "qasper", "trec")}

    ce = CrossEncoder(MODEL_OUT, max_length=MAX_LENGTH, device="cpu")
    assert ce.model.dtype == torch.float32 and ce.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(MODEL_OUT)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL_OUT).eval()
    assert model.dtype == torch.float32

    cases = build_cases(tok, data)
    queries = [q for _, q, _ in cases]
    passages = [p for _, _, p in cases]
    pairs = [[q, p] for q, p in zip(queries, passages)]
    assert len(pairs) <= 32  # one predict batch

    st_logits = ce.predict(pairs, activation_fct=torch.nn.Identity(), convert_to_numpy=True)
    st_logits = np.asarray(st_logits, dtype=np.float32).reshape(-1)

    features = tok(queries, passages, padding=True, truncation="longest_first", max_length=MAX_LENGTH,
                   return_tensors="pt")
    st_features = ce.tokenizer([q.strip() for q in queries], [p.strip() for p in passages], padding=True,
                               truncation="longest_first", max_length=MAX_LENGTH, return_tensors="pt")
    for k in features:
        assert torch.equal(features[k], st_features[k]), k
    with torch.no_grad():
        raw_logits = model(**features).logits.reshape(-1).numpy().astype(np.float32)

    rows, single = [], []
    for i, (name, q, p) in enumerate(cases):
        mask = features["attention_mask"][i].bool()
        ids = [int(x) for x in features["input_ids"][i][mask]]
        tt = [int(x) for x in features["token_type_ids"][i][mask]]
        # Batch form even for one pair: tok(q, "") would drop the empty text_pair (falsy) and give
        # [CLS] q [SEP] without the second [SEP]; CrossEncoder always calls the batch form.
        one = tok([q], [p], truncation="longest_first", max_length=MAX_LENGTH, return_tensors="pt")
        assert one["input_ids"][0].tolist() == ids and one["token_type_ids"][0].tolist() == tt, name
        with torch.no_grad():
            single.append(float(model(**one).logits.reshape(-1)[0]))
        n_full = len(tok([q], [p])["input_ids"][0])
        assert ids[0] == 101 and ids[-1] == 102 and len(ids) == min(n_full, MAX_LENGTH), name
        n_q = tt.index(1) - 2 if 1 in tt else None
        rows.append({"name": name, "query": q, "passage": p, "n_tokens_untruncated": n_full,
                     "input_ids": ids, "token_type_ids": tt, "logit": float(st_logits[i])})
        print(f"  {name:28s} tokens={n_full:5d} fed={len(ids):3d} query_fed={n_q} "
              f"st={st_logits[i]: .6f} raw={raw_logits[i]: .6f} single={single[-1]: .6f}")
    single = np.asarray(single, dtype=np.float32)
    diff_raw = float(np.max(np.abs(st_logits - raw_logits)))
    diff_single = float(np.max(np.abs(st_logits - single)))
    spread = float(np.std(st_logits))
    srt = np.sort(st_logits)
    min_gap = float(np.min(srt[1:] - srt[:-1]))
    print(f"  max |st - raw| = {diff_raw:.3g}, max |st - single unpadded| = {diff_single:.3g}, "
          f"std = {spread:.4f}, min gap between logits = {min_gap:.4g}")
    assert diff_raw < 1e-5 and diff_single < 1e-4, (diff_raw, diff_single)
    assert spread > 1.0 and min_gap > 5e-3, (spread, min_gap)
    n_trunc = sum(r["n_tokens_untruncated"] > MAX_LENGTH for r in rows)
    assert n_trunc >= 3

    head = {"meta": {
        "model_dir": os.path.relpath(MODEL_OUT, FIXTURES),
        "model": "random-weight BertForSequenceClassification (num_labels 1, hidden 8, 2 heads, 2 layers, "
                 f"intermediate 16), weights float16 in safetensors, seed {WEIGHT_SEED}; tokenizer from "
                 "assets/minilm (all-MiniLM-L6-v2, uncased WordPiece)",
        "tensors": names,
        "max_length": MAX_LENGTH,
        "logit": "CrossEncoder(model_dir, max_length=512, device='cpu').predict(pairs, "
                 "activation_fct=torch.nn.Identity()) over all pairs in one batch (padded), float32",
        "checks": "tokenizer(queries, passages, padding=True, truncation='longest_first', max_length=512, "
                  "return_tensors='pt'); model(**features).logits (same padded batch), and each pair alone "
                  "without padding",
        "agreement": {"max_abs_diff_raw_transformers_padded": diff_raw,
                      "max_abs_diff_single_unpadded": diff_single},
        "logit_std": spread, "logit_min_gap": min_gap,
        "input_ids": "[CLS] query [SEP] passage [SEP] after longest_first truncation to 512, without padding; "
                     "token_type_ids 0 up to and including the first [SEP], 1 after",
        "data": "../shared/data/longbench/<dataset>.jsonl",
        "versions": versions(),
    }}
    write_fixture(CASES_OUT, head, [("cases", rows)], ROOT)


if __name__ == "__main__":
    main()
