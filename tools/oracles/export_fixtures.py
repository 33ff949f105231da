"""Runs the jobs `longctx train --export` writes with the real engines, on CPU, and records what
they did, for longctx's export tests. Run by hand (never by CI), from any directory, with a
release build of longctx and a venv holding the engine's pins (tools/oracles/README.md):

    cargo build --release
    python3 -m venv /tmp/vx && /tmp/vx/bin/pip install -r tools/oracles/requirements-export-trl.txt
    /tmp/vx/bin/python tools/oracles/export_fixtures.py --engine trl
    /tmp/vx/bin/pip install bitsandbytes==0.48.2 && /tmp/vx/bin/python tools/oracles/export_fixtures.py --engine trl-qlora
    python3 -m venv /tmp/vt && /tmp/vt/bin/pip install -r tools/oracles/requirements-export-torchtune.txt
    /tmp/vt/bin/python tools/oracles/export_fixtures.py --engine torchtune --no-two-processes \\
        --peft-python /tmp/vx/bin/python
    python3 -m venv /tmp/va && /tmp/va/bin/pip install -r tools/oracles/requirements-export-axolotl.txt
    /tmp/va/bin/python tools/oracles/export_fixtures.py --engine axolotl --peft-python /tmp/vx/bin/python

For the engine it:
  0. (torchtune) writes tests/fixtures/export/llama-plain-rope/: the tiny Llama without its linear
     RoPE scaling, which torchtune's Llama builders cannot express; its job is job-torchtune.toml;
  1. exports tests/fixtures/export/job.toml (the tiny Llama of tests/fixtures/train, eight
     conversations, one optimizer step of four packs, LongAlign's loss) into a temporary directory
     and copies the written files to tests/fixtures/export/<engine>/, with the model's absolute
     path replaced by @MODEL@ (the export tests compare a fresh export with these files);
  2. runs the exported job unchanged (its launch.sh, one process, on the CPU; for torchtune with
     the override device=cpu, for axolotl with its Triton LoRA kernels turned off);
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
LOGIT_TOKENS = 48
# Per engine: the job file and its model. torchtune's Llama builders have no linear RoPE scaling,
# so its job trains the tiny Llama without it (same weights, `rope_scaling` removed).
JOBS = {
    "trl": ("job.toml", os.path.join(ROOT, "tests", "fixtures", "train", "llama")),
    "torchtune": ("job-torchtune.toml", os.path.join(FIXTURES, "llama-plain-rope")),
    "axolotl": ("job.toml", os.path.join(ROOT, "tests", "fixtures", "train", "llama")),
    # QLoRA through TRL: the NF4 base is bitsandbytes' (CPU backend); only step 1 is recorded
    # (trl-qlora_run.json), against `longctx loss --quantize nf4`.
    "trl-qlora": ("job-qlora.toml", os.path.join(ROOT, "tests", "fixtures", "train", "llama")),
}
# axolotl's fused LoRA kernels are Triton (GPU) code: off on the CPU (the loss is the same).
AXOLOTL_CPU = "lora_mlp_kernel: false\nlora_qkv_kernel: false\nlora_o_kernel: false\n"


def plain_rope_model():
    src = JOBS["trl"][1]
    dest = JOBS["torchtune"][1]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    del config["rope_scaling"]
    with open(os.path.join(dest, "config.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(dest, ROOT)}/ (tests/fixtures/train/llama without rope_scaling)")


def export(longctx, engine, out, gpus=None):
    job_file, model = JOBS[engine]
    extra = ["--gpus", str(gpus)] if gpus else []
    subprocess.run([longctx, "train", os.path.join(FIXTURES, job_file), "--export", out, "--engine",
                    engine.split("-")[0]] + extra, cwd=ROOT, check=True)
    if gpus or engine not in ("trl", "torchtune", "axolotl"):
        return
    model = os.path.realpath(model)
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


LOGITS = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
model_dir, adapter_dir, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
model = PeftModel.from_pretrained(base, adapter_dir).eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids])).logits[0]
print(json.dumps([[float(x) for x in row] for row in logits.numpy()]))
"""


def adapted_logits(python, model_dir, adapter_dir, ids):
    """The logits of the engine's adapter through peft over the base (in `python`, a venv with
    transformers and peft: peft 0.21 refuses torchtune's torchao 0.11 in the same venv)."""
    out = subprocess.run([python, "-c", LOGITS, model_dir, adapter_dir, json.dumps(ids)], check=True,
                         capture_output=True, text=True, env=env()).stdout
    return json.loads(out)


def max_adapter_delta(a, b):
    from safetensors.torch import load_file

    ta = load_file(os.path.join(a, "adapter_model.safetensors"))
    tb = load_file(os.path.join(b, "adapter_model.safetensors"))
    assert ta.keys() == tb.keys()
    return max(float((ta[k] - tb[k]).abs().max()) for k in ta)


def env():
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
                PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])


def run_trl(job):
    subprocess.run(["bash", "launch.sh", "--cpu"], cwd=job, env=env(), check=True)
    return trainer_log(job)


def run_axolotl(job):
    with open(os.path.join(job, "config.yml"), "a") as f:
        f.write(AXOLOTL_CPU)
    subprocess.run(["bash", "launch.sh", "--cpu"], cwd=job, env=dict(env(), AXOLOTL_DO_NOT_TRACK="1"), check=True)
    return trainer_log(job)


def trainer_log(job):
    [state_path] = glob.glob(os.path.join(job, "output", "checkpoint-*", "trainer_state.json"))
    with open(state_path) as f:
        state = json.load(f)
    return state["log_history"][0], os.path.join(job, "output")


def run_torchtune(job):
    """The stock recipe on the CPU (`device=cpu`, the one override); step 1 from its DiskLogger."""
    subprocess.run(["bash", "launch.sh", "device=cpu"], cwd=job, env=env(), check=True)
    [log_path] = glob.glob(os.path.join(job, "output", "logs", "log_*.txt"))
    with open(log_path) as f:
        first = f.readline()
    # "Step 1 | loss:7.01 lr:0.05 ..."
    step, values = first.split("|", 1)
    log = {"step": int(step.split()[1])}
    for item in values.split():
        key, value = item.split(":", 1)
        log[key] = float(value)
    return log, os.path.join(job, "output", "epoch_0")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=sorted(JOBS), required=True)
    ap.add_argument("--longctx", default=os.path.join(ROOT, "target", "release", "longctx"))
    ap.add_argument("--peft-python", default=sys.executable,
                    help="a Python with transformers and peft for the adapter's logits (default: this one)")
    ap.add_argument("--no-two-processes", dest="two_processes", action="store_false",
                    help="skip the two-process run")
    args = ap.parse_args()
    import torch

    if args.engine == "trl-qlora":
        import bitsandbytes
        import trl

        versions = {"trl": trl.__version__, "bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__}
        with tempfile.TemporaryDirectory() as tmp:
            job = os.path.join(tmp, "job")
            export(args.longctx, args.engine, job)
            log, _ = run_trl(job)
        path = os.path.join(FIXTURES, "trl-qlora_run.json")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            json.dump({"meta": {"script": "tools/oracles/export_fixtures.py", "engine": "trl (QLoRA)",
                                "versions": versions,
                                "what": "the exported job of tests/fixtures/export/job-qlora.toml run by its launch.sh "
                                        "on the CPU: the engine's log of step 1 (loss over the NF4 base)"},
                       "step1": log}, f)
            f.write("\n")
        print(f"wrote {os.path.relpath(path, ROOT)}: step 1 loss {log['loss']}")
        return
    if args.engine == "trl":
        import trl

        versions = {"trl": trl.__version__}
        run = run_trl
    elif args.engine == "axolotl":
        import axolotl
        import transformers

        versions = {"axolotl": axolotl.__version__, "transformers": transformers.__version__}
        run = run_axolotl
    else:
        import torchao
        import torchtune

        versions = {"torchtune": torchtune.__version__, "torchao": torchao.__version__}
        run = run_torchtune
        plain_rope_model()
    versions["torch"] = torch.__version__
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job")
        export(args.longctx, args.engine, job)
        log, adapter = run(job)
        # The same job for two data-parallel processes (over gloo on the CPU): ten packs per step,
        # six of them weight-0 fillers; the step's loss and gradient must not change.
        log2, adapter_delta = None, None
        if args.two_processes:
            job2 = os.path.join(tmp, "job2")
            export(args.longctx, args.engine, job2, gpus=2)
            log2, adapter2 = run(job2)
            adapter_delta = max_adapter_delta(adapter, adapter2)
        with open(os.path.join(job, "data", "packs.jsonl")) as f:
            first = json.loads(f.readline())
        ids = first["input_ids"][:LOGIT_TOKENS]
        logits = adapted_logits(args.peft_python, JOBS[args.engine][1], adapter, ids)
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
            "versions": versions,
            "what": f"the exported job of tests/fixtures/export/{JOBS[args.engine][0]} run by its launch.sh on the CPU (one "
                    "process): the engine's log of step 1 (loss at the initial weights) and the logits of the "
                    "adapter it saved (peft over the base, eager attention) over the first pack's first "
                    f"{LOGIT_TOKENS} tokens",
        },
        "step1": log,
        **({"step1_two_processes": log2, "adapter_max_abs_diff_one_vs_two_processes": adapter_delta}
           if log2 else {}),
        "logit_ids": ids,
        "logits": [floats(row) for row in logits],
    }
    path = os.path.join(FIXTURES, f"{args.engine}_run.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(record, f)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)}: step 1 loss {log['loss']}, two processes "
          f"{log2 and log2['loss']}, adapters differ by {adapter_delta}")


if __name__ == "__main__":
    main()
