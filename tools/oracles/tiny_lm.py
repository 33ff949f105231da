"""Tiny random-weight decoder models and their transformers logits, for the candle decoder's
parity tests (crates/longctx-models/tests/llama_parity.rs). Run by hand (never by CI) with the
pins of tools/oracles/requirements-rope.txt:
    python3 tools/oracles/tiny_lm.py

For each model it writes tests/fixtures/tiny/<name>/ with config.json and model.safetensors
(save_pretrained) and logits.safetensors holding, for 200 seeded random token ids (`ids`):
  * `single`: logits of one forward pass over all 200 tokens;
  * `chunked`: logits of passes over tokens 0..64, 64..150 with a DynamicCache, then one
    token at a time for 150..200 (decode), concatenated.
max_position_embeddings is 64, so 200 tokens exercise every RoPE scaling variant; eager
attention in float32. Weights are drawn with std 0.25 (not transformers' 0.02), so that
attention is sharp and the logits are large enough for a wrong rotation to show: the script
prints how far each model's logits move under a RoPE change (dynamic NTK's chunked vs single
pass) as evidence.
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import (DynamicCache, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "tiny")
COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, attn_implementation="eager",
              initializer_range=0.25)
MODELS = [
    ("llama", LlamaConfig, LlamaForCausalLM, dict(rope_theta=10000.0)),
    ("smollm2_tied", LlamaConfig, LlamaForCausalLM, dict(rope_theta=100000.0, tie_word_embeddings=True)),
    ("llama_linear4", LlamaConfig, LlamaForCausalLM, dict(rope_scaling={"rope_type": "linear", "factor": 4.0})),
    ("llama_dynamic2", LlamaConfig, LlamaForCausalLM, dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
    ("llama_yarn4", LlamaConfig, LlamaForCausalLM, dict(rope_scaling={"rope_type": "yarn", "factor": 4.0})),
    ("llama31", LlamaConfig, LlamaForCausalLM, dict(rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16})),
    ("mistral_window32", MistralConfig, MistralForCausalLM, dict(sliding_window=32, rope_theta=10000.0)),
    ("qwen2", Qwen2Config, Qwen2ForCausalLM, dict(rope_theta=10000.0)),
]
CHUNKS = [(0, 64), (64, 150)] + [(i, i + 1) for i in range(150, 200)]


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, COMMON["vocab_size"], (1, 200), generator=gen)
    for i, (name, config_cls, model_cls, extra) in enumerate(MODELS):
        torch.manual_seed(100 + i)
        cfg = config_cls(**COMMON, **extra)
        model = model_cls(cfg).eval()
        # Random biases too (they start at zero), so that Qwen2's q/k/v biases are tested.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if pname.endswith(".bias"):
                    p.normal_(0.0, 0.1)
        out = os.path.join(OUT, name)
        model.save_pretrained(out, safe_serialization=True)
        with torch.no_grad():
            single = model(ids).logits[0]
            # A fresh model for the chunked run: the rotary module keeps its dynamic-NTK state
            # between calls, and the chunked run must start from the initial frequencies.
            model = model_cls.from_pretrained(out, attn_implementation="eager").eval()
            cache = DynamicCache()
            parts = []
            for start, end in CHUNKS:
                o = model(ids[:, start:end], past_key_values=cache, use_cache=True,
                          position_ids=torch.arange(start, end).unsqueeze(0))
                cache = o.past_key_values
                parts.append(o.logits[0])
            chunked = torch.cat(parts, 0)
        save_file({"ids": ids[0].to(torch.int64), "single": single.contiguous(), "chunked": chunked.contiguous()},
                  os.path.join(out, "logits.safetensors"))
        # Only what the runtime reads; generation_config.json is not needed.
        gc = os.path.join(out, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
        print(name, "single vs chunked max |Δ|", float((single - chunked).abs().max()))
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump({"generator": "python3 tools/oracles/tiny_lm.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "chunks": CHUNKS[:3] + ["... one token at a time"]}, f,
                  indent=1)


if __name__ == "__main__":
    main()
