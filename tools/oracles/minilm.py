"""sentence-transformers reference outputs of all-MiniLM-L6-v2 for the Rust embedder and naive RAG
(crates/longctx-context). Run by hand (never by CI), from the repository root, with the pins of
tools/oracles/requirements-minilm.txt and the model in assets/minilm (tools/fetch_assets.sh):
    /work/venv-oracle/bin/python tools/oracles/minilm.py --data-dir DIR
No network: the model is loaded from the local directory on the CPU. Writes:

crates/longctx-context/tests/fixtures/minilm_embeddings.json
    {"model", "max_seq_length", "cases": [{"name", "text", "n_tokens_untruncated", "input_ids",
    "embedding"}]}: input_ids are what sentence-transformers feeds the model (model.tokenize, CLS and
    SEP included, truncated to 256, padding dropped by the attention mask); embedding is
    encode(texts, batch_size=8, normalize_embeddings=True) for all texts in one call.
crates/longctx-context/tests/fixtures/rag_topk.json
    naive RAG on real LongBench records: the context is cut into consecutive 200-code-point chunks
    (context[i:i+200]), chunks and the query (the record's `input`) are embedded as above, scored
    by float32 dot product, and ranked by descending score, ties to the lower chunk id. Per k:
    ids_by_score, scores, and margin (score of the k-th minus the (k+1)-th; null when
    n_chunks <= k) and min_gap (smallest gap between neighbours of the top k+1 ranking), so that a
    test can tell a fragile near-tie from a real mismatch.
"""
import argparse
import hashlib
import json
import os

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported; the model is local
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from fixture_io import floats, write_fixture  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MODEL = os.path.join(ROOT, "assets", "minilm")
OUT = os.path.join(ROOT, "crates", "longctx-context", "tests", "fixtures")
CHUNK = 200
KS = (5, 20)
# (file, 0-based line) of the RAG samples. multi_news line 4 has 15 chunks, fewer than k=20.
RAG_SAMPLES = [("multi_news", 0), ("multi_news", 4), ("multifieldqa_zh", 0), ("multifieldqa_zh", 2),
               ("passage_retrieval_zh", 0), ("passage_retrieval_zh", 1), ("qasper", 0), ("trec", 0)]

HAND_TEXTS = [
    ("short_en", "The quick brown fox jumps over the lazy dog."),
    ("question", "What is the capital of France?"),
    ("punctuation", "Hello, world!!! (Really?) \"Quotes\" -- dashes; semi:colons... and/or [brackets] {braces} #tag @user"),
    ("accents", "Café crème, naïve résumé; Müller & Söhne GmbH, Straße, Ångström, São Paulo, Dvořák"),
    ("chinese", "全国美国文学研究会的第十八届年会在哪所大学举办的？"),
    ("emoji", "I love pizza 🍕🍕 and cats 🐱! 👍🏽 family: 👨‍👩‍👧"),
    ("mixed_case", "HeLLo WoRLD iPhone McDonald's NASA nasa NaSa"),
    ("empty", ""),
    ("whitespace_only", "   \n\t  \r\n "),
    ("whitespace_runs", "  leading and\t\ttabs\n\n\nnewlines   trailing  \r\n"),
    ("code", "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}"),
    ("numbers", "In 2023, revenue rose 12.5% to $3,456,789.01 (vs. 1e-3); call +1-800-555-0199 or 0x1F."),
    ("control_and_zero_width", "zero\u200bwidth\u00a0nbsp soft\u00adhyphen ctrl\x00\x07bell"),
    ("long_word", "prefix " + "a" * 101 + " suffix " + "b" * 100),
    ("mixed_scripts", "Tokyo 東京 Москва Αθήνα القاهرة मुंबई 서울"),
]


def load_records(data_dir, name):
    with open(os.path.join(data_dir, name + ".jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def n_tokens(model, text):
    return len(model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def prefix_with_tokens(model, text, target):
    """Shortest character prefix of `text` whose untruncated token count (incl. CLS/SEP) is target."""
    lo, hi = 0, len(text)
    while lo < hi:  # smallest prefix with at least `target` tokens
        mid = (lo + hi) // 2
        if n_tokens(model, text[:mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    for end in range(lo, len(text) + 1):
        if n_tokens(model, text[:end]) == target:
            return text[:end]
    raise ValueError(f"no prefix with {target} tokens")


def embed(model, texts):
    return model.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)


def fed_ids(model, texts):
    tok = model.tokenize(texts)
    return [[int(i) for i, m in zip(ids, mask) if m] for ids, mask in zip(tok["input_ids"], tok["attention_mask"])]


def embeddings_fixture(model, data):
    qasper = data["qasper"][0]["context"]
    cases = list(HAND_TEXTS)
    cases += [
        ("long_en_qasper_2400", qasper[:2400]),
        ("long_en_multi_news_3000", data["multi_news"][0]["context"][:3000]),
        ("long_zh_multifieldqa_2000", data["multifieldqa_zh"][0]["context"][:2000]),
        ("exactly_256_tokens", prefix_with_tokens(model, qasper, 256)),
        ("exactly_257_tokens", prefix_with_tokens(model, qasper, 257)),
        ("chunk200_multi_news", data["multi_news"][1]["context"][:CHUNK]),
        ("chunk200_multifieldqa_zh", data["multifieldqa_zh"][1]["context"][CHUNK:2 * CHUNK]),
        ("chunk200_passage_retrieval_zh", data["passage_retrieval_zh"][2]["context"][:CHUNK]),
        ("chunk200_trec", data["trec"][0]["context"][5 * CHUNK:6 * CHUNK]),
    ]
    texts = [t for _, t in cases]
    embs = embed(model, texts)
    ids = fed_ids(model, texts)
    rows = []
    for (name, text), e, i in zip(cases, embs, ids):
        assert len(i) <= model.max_seq_length and i[0] == 101 and i[-1] == 102, name
        rows.append({"name": name, "text": text, "n_tokens_untruncated": n_tokens(model, text), "input_ids": i,
                     "embedding": floats(e)})
        print(f"  {name:32s} chars={len(text):5d} tokens={rows[-1]['n_tokens_untruncated']:5d} fed={len(i)}")
    head = {"model": "sentence-transformers/all-MiniLM-L6-v2", "max_seq_length": model.max_seq_length,
            "encode": "SentenceTransformer(assets/minilm, device='cpu').encode(texts, batch_size=8, "
                      "normalize_embeddings=True, convert_to_numpy=True)",
            "versions": versions()}
    write_fixture(os.path.join(OUT, "minilm_embeddings.json"), head, [("cases", rows)], ROOT)


def rag_fixture(model, data):
    rows = []
    for name, line in RAG_SAMPLES:
        rec = data[name][line]
        ctx, query = rec["context"], rec["input"]
        chunks = [ctx[i:i + CHUNK] for i in range(0, len(ctx), CHUNK)]
        embs = embed(model, chunks + [query])
        scores = (embs[:-1] @ embs[-1]).astype(np.float32)
        order = np.lexsort((np.arange(len(chunks)), -scores))  # last key is primary
        topk = {}
        for k in KS:
            top = order[:k]
            ranked = scores[order[:k + 1]]
            topk[str(k)] = {
                "ids_by_score": [int(i) for i in top],
                "scores": floats(scores[top]),
                "margin": float(scores[order[k - 1]] - scores[order[k]]) if len(chunks) > k else None,
                "min_gap": float(np.min(ranked[:-1] - ranked[1:])) if len(ranked) > 1 else None,
            }
        rows.append({
            "dataset": rec["dataset"], "_id": rec["_id"], "line": line,
            "context_sha256": hashlib.sha256(ctx.encode("utf-8")).hexdigest(),
            "context_chars": len(ctx), "n_chunks": len(chunks), "query": query,
            "query_n_tokens_untruncated": n_tokens(model, query), "topk": topk,
            "doc_order_ids_k5": sorted(topk["5"]["ids_by_score"]),
        })
        print(f"  {name}:{line} chunks={len(chunks)} top5={topk['5']['ids_by_score']} "
              f"margin5={topk['5']['margin']} margin20={topk['20']['margin']} "
              f"min_gap20={topk['20']['min_gap']}")
    head = {"model": "sentence-transformers/all-MiniLM-L6-v2", "chunk_chars": CHUNK,
            "data": "../shared/data/longbench/<dataset>.jsonl",
            "method": "chunks = [context[i:i+200] ...]; embs = encode(chunks + [input], batch_size=8, "
                      "normalize_embeddings=True); score = chunk_emb @ query_emb (float32); rank by "
                      "(-score, chunk id); margin = score[k-th] - score[(k+1)-th]",
            "versions": versions()}
    write_fixture(os.path.join(OUT, "rag_topk.json"), head, [("samples", rows)], ROOT)


def versions():
    return {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "numpy": np.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, help="official LongBench *.jsonl files")
    args = ap.parse_args()
    assert sentence_transformers.__version__ == "3.3.1", sentence_transformers.__version__
    torch.manual_seed(0)
    model = SentenceTransformer(MODEL, device="cpu")
    assert model.max_seq_length == 256
    data = {n: load_records(args.data_dir, n)
            for n in ("multi_news", "multifieldqa_zh", "passage_retrieval_zh", "qasper", "trec")}
    os.makedirs(OUT, exist_ok=True)
    embeddings_fixture(model, data)
    rag_fixture(model, data)


if __name__ == "__main__":
    main()
