"""Greedy generation of the tiny models with transformers' generate(), for the runtime's
parity test (crates/longctx-models/tests/generate_parity.rs). Run by hand after tiny_lm.py
and tiny_perplexity.py (pins: tools/oracles/requirements-rope.txt):
    python3 tools/oracles/tiny_generate.py

Prompts are three slices of text.txt's tokens (without special tokens), of 20, 60 and 100
tokens; generation is greedy (do_sample=False) for up to 40 new tokens with the model's
eos_token_id, in one prefill then token by token, so prompts of 60 and 100 tokens run past
max_position_embeddings (64) while decoding. Writes tests/fixtures/tiny/generate.json.
"""
import json
import os

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "tiny")
MODELS = ["llama", "smollm2_tied", "llama_linear4", "llama_dynamic2", "llama_yarn4", "llama31", "mistral_window32",
          "qwen2"]


def main():
    tok = Tokenizer.from_file(os.path.join(TINY, "tokenizer.json"))
    with open(os.path.join(TINY, "text.txt"), encoding="utf-8") as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids
    prompts = [ids[0:20], ids[100:160], ids[200:300]]
    out = {}
    for name in MODELS:
        runs = []
        for prompt in prompts:
            model = AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), attn_implementation="eager").eval()
            with torch.no_grad():
                gen = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                     max_new_tokens=40, do_sample=False, eos_token_id=model.config.eos_token_id,
                                     pad_token_id=model.config.eos_token_id)
            runs.append({"prompt": prompt, "generated": gen[0, len(prompt):].tolist(),
                         "eos_token_id": model.config.eos_token_id})
        out[name] = runs
        print(name, [len(r["generated"]) for r in runs])
    with open(os.path.join(TINY, "generate.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
