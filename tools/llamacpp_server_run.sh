#!/usr/bin/env bash
# Runs examples/llamacpp.toml against llama-cpp-python's OpenAI-compatible server serving the
# SmolLM2 GGUF: the HTTP backend with a real third-party server. Not part of CI.
#
#   tools/llamacpp_server_run.sh            # creates .venv-llamacpp (builds llama.cpp, ~5 min)
#   VENV=/path/to/venv tools/llamacpp_server_run.sh   # reuse a venv that has it
#
# Afterwards it compares the predictions with the native backend's on the same prompts
# (runs/llamacpp vs runs/llamacpp-native) and prints how many are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-llamacpp}"
PORT="${PORT:-8081}"
GGUF=assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || tools/fetch_assets.sh
mkdir -p runs
if ! "$VENV/bin/python" -c 'import llama_cpp.server, uvicorn' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
fi
"$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
"$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias smollm2 \
    --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --n_threads "$(nproc)" > runs/llamacpp-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null && break
    sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null || { echo "the server did not start; see runs/llamacpp-server.log"; exit 1; }
cargo run -q --release -p longctx -- run examples/llamacpp.toml --no-report "$@"
# The same experiment on the native backend, for comparison.
sed -e 's/^name = "llamacpp"/name = "llamacpp-native"/' \
    -e 's/^backend = "openai"/backend = "native"/' \
    -e '/^base_url\|^model = \|^concurrency\|^timeout_s/d' \
    -e 's/^tokenizer = /path = /' examples/llamacpp.toml > runs/llamacpp-native.toml
cargo run -q --release -p longctx -- run runs/llamacpp-native.toml --no-report
python3 - <<'PY'
import json, pathlib
a, b = pathlib.Path("runs/llamacpp"), pathlib.Path("runs/llamacpp-native")
same = total = 0
for f in sorted(a.glob("*/*.jsonl")):
    other = b / f.parent.name / f.name
    pa = {json.loads(l)["id"]: json.loads(l) for l in f.read_text().splitlines()}
    pb = {json.loads(l)["id"]: json.loads(l) for l in other.read_text().splitlines()}
    for i, x in pa.items():
        total += 1
        same += x["pred"] == pb[i]["pred"]
        if x["prompt_tokens"] != pb[i]["prompt_tokens"]:
            print(f"{f.parent.name}/{f.name} {i[:8]}: prompt tokens llama.cpp {x['prompt_tokens']} native {pb[i]['prompt_tokens']}")
print(f"{same} of {total} predictions identical between llama.cpp's server and the native backend")
PY
