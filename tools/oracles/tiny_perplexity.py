"""Per-token NLL of the tiny models (tools/oracles/tiny_lm.py) as transformers computes it with
Hugging Face's sliding-window perplexity procedure ("Perplexity of fixed-length models").

Run by hand after tiny_lm.py (pins: tools/oracles/requirements-rope.txt):
    python3 tools/oracles/tiny_perplexity.py

Writes tests/fixtures/tiny/tokenizer.json (a 96-token BPE trained on text.txt, shared by all
tiny models and copied into each model directory) and tests/fixtures/tiny/perplexity.json:
for each model and (context, stride) in [(64, 32), (128, 64), (64, 64)], the per-token NLL of
every scored token, in order. Procedure, as in the guide: the text is tokenized without
special tokens; windows start at 0, stride, 2*stride, ...; each window is one forward pass
(no cache carried over, but the same model object, so that a dynamic-NTK model keeps its
rotary state as it would there); a window scores its last `end - prev_end` tokens (the first
window all but its first token); the loop stops at the window that reaches the end.
"""
import json
import os
import shutil

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny")
MODELS = ["llama", "smollm2_tied", "llama_linear4", "llama_dynamic2", "llama_yarn4", "llama31", "mistral_window32",
          "qwen2"]
SETTINGS = [(64, 32), (128, 64), (64, 64)]


def train_tokenizer(text):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=60,
                                  show_progress=False)
    tok.train_from_iterator([text], trainer)
    assert tok.get_vocab_size() <= 96
    return tok


def per_token_nll(model, ids, context, stride):
    seq_len = len(ids)
    nlls = []
    prev_end = 0
    for begin in range(0, seq_len, stride):
        end = min(begin + context, seq_len)
        trg_len = end - prev_end
        window = torch.tensor([ids[begin:end]])
        with torch.no_grad():
            logits = model(window).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        # Position t predicts token t + 1; the scored targets are the last trg_len tokens
        # (all but the first for the first window).
        first = max(end - begin - trg_len, 1)
        for t in range(first, end - begin):
            nlls.append(-float(logp[t - 1, window[0, t]]))
        prev_end = end
        if end == seq_len:
            break
    return nlls


def main():
    with open(os.path.join(TINY, "text.txt"), encoding="utf-8") as f:
        text = f.read()
    tok = train_tokenizer(text)
    tok.save(os.path.join(TINY, "tokenizer.json"))
    ids = tok.encode(text, add_special_tokens=False).ids
    out = {"n_tokens": len(ids), "ids_head": ids[:16], "settings": {}}
    for name in MODELS:
        shutil.copy(os.path.join(TINY, "tokenizer.json"), os.path.join(TINY, name, "tokenizer.json"))
        for context, stride in SETTINGS:
            # A fresh model per setting; within a setting it persists across windows.
            model = AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), attn_implementation="eager").eval()
            nll = per_token_nll(model, ids, context, stride)
            out["settings"].setdefault(name, []).append({"context": context, "stride": stride, "per_token_nll": nll})
            print(name, context, stride, len(nll), sum(nll) / len(nll))
    with open(os.path.join(TINY, "perplexity.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
