"""Runs the jobs `longctx train --export` writes with the real engines, on CPU, and records what
they did, for longctx's export tests. Run by hand (never by CI), from any directory, with a
release build of longctx and a venv holding the engine's pins (tools/oracles/README.md):

    cargo build --release
    python3 -m venv /tmp/vx && /tmp/vx/bin/pip install -r tools/oracles/requirements-export-trl.txt
    /tmp/vx/bin/python tools/oracles/export_fixtures.py --engine trl

For the engine it:
  1. exports tests/fixtures/export/job.toml (the tiny Llama of tests/fixtures/train, eight
     conversations, one optimizer step of four packs, LongAlign's loss) into a temporary directory
     and copies the written files to tests/fixtures/export/<engine>/, with the model's absolute
     path replaced by @MODEL@ (the export tests compare a fresh export with these files);
  2. runs the exported job unchanged (its launch.sh, one process, on the CPU; the job's own
     settings, except that the model path points at this checkout);
  3. records in tests/fixtures/export/<engine>_run.json the engine's logged loss of step 1 (taken
     at the initial weights, where LoRA's B is zero, so it is the base model's loss of the step:
     the export tests require `longctx`'s loss of the same eight conversations to equal it), its
     gradient norm, and the logits of the adapted model (the engine's adapter through peft) over
     the first pack's tokens;
  4. runs the job exported for two GPUs as two processes (DDP over gloo on the CPU) and records
     its step-1 log and how far its adapter is from the one-process run's (the hook's scaling
     makes a step's gradient independent of the process count);
  5. copies the adapter the engine saved to tests/fixtures/export/<engine>_adapter/ (the export
     tests load it with longctx and require the same logits).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import floats  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "export")
MODEL = os.path.join(ROOT, "tests", "fixtures", "train", "llama")
LOGIT_TOKENS = 48


def export(longctx, engine, out, gpus=None):
    extra = ["--gpus", str(gpus)] if gpus else []
    subprocess.run([longctx, "train", os.path.join(FIXTURES, "job.toml"), "--export", out, "--engine", engine]
                   + extra, cwd=ROOT, check=True)
    if gpus:
        return
    model = os.path.realpath(MODEL)
    dest = os.path.join(FIXTURES, engine)
    shutil.rmtree(dest, ignore_errors=True)
    for base, _, files in os.walk(out):
        for name in files:
            src = os.path.join(base, name)
            rel = os.path.relpath(src, out)
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            with open(src, encoding="utf-8") as f:
                text = f.read()
            with open(os.path.join(dest, rel), "w", encoding="utf-8", newline="\n") as f:
                f.write(text.replace(model, "@MODEL@"))
    print(f"wrote {os.path.relpath(dest, ROOT)}/")


def adapted_logits(adapter_dir, ids):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def max_adapter_delta(a, b):
    from safetensors.torch import load_file

    ta = load_file(os.path.join(a, "adapter_model.safetensors"))
    tb = load_file(os.path.join(b, "adapter_model.safetensors"))
    assert ta.keys() == tb.keys()
    return max(float((ta[k] - tb[k]).abs().max()) for k in ta)


def run_trl(job):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    subprocess.run(["bash", "launch.sh", "--cpu"], cwd=job, env=env, check=True)
    [state_path] = glob.glob(os.path.join(job, "output", "checkpoint-*", "trainer_state.json"))
    with open(state_path) as f:
        state = json.load(f)
    return state["log_history"][0], os.path.join(job, "output")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["trl"], required=True)
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    args = ap.parse_args()
    import peft
    import torch
    import transformers
    import trl

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job")
        export(args.longctx, args.engine, job)
        log, adapter = run_trl(job)
        # The same job for two data-parallel processes (DDP over gloo on the CPU): ten packs per
        # step, six of them weight-0 fillers; the step's loss and gradient must not change.
        job2 = os.path.join(tmp, "job2")
        export(args.longctx, args.engine, job2, gpus=2)
        log2, adapter2 = run_trl(job2)
        adapter_delta = max_adapter_delta(adapter, adapter2)
        with open(os.path.join(job, "data", "packs.jsonl")) as f:
            first = json.loads(f.readline())
        ids = first["input_ids"][:LOGIT_TOKENS]
        logits = adapted_logits(adapter, ids)
        dest = os.path.join(FIXTURES, f"{args.engine}_adapter")
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        for name in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copy(os.path.join(adapter, name), dest)
        print(f"wrote {os.path.relpath(dest, ROOT)}/")
    record = {
        "meta": {
            "script": "tools/oracles/export_fixtures.py",
            "engine": args.engine,
            "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "torch": torch.__version__},
            "what": "the exported job of tests/fixtures/export/job.toml run by its launch.sh on the CPU (one "
                    "process): the engine's log of step 1 (loss at the initial weights) and the logits of the "
                    "adapter it saved (peft over the base, eager attention) over the first pack's first "
                    f"{LOGIT_TOKENS} tokens",
        },
        "step1": log,
        "step1_two_processes": log2,
        "adapter_max_abs_diff_one_vs_two_processes": adapter_delta,
        "logit_ids": ids,
        "logits": [floats(row) for row in logits],
    }
    path = os.path.join(FIXTURES, f"{args.engine}_run.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(record, f)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)}: step 1 loss {log['loss']}, two processes {log2['loss']}, "
          f"adapters differ by {adapter_delta}")


if __name__ == "__main__":
    main()
