//! `longctx train`, `loss`, `merge` and `--adapter`, on the tiny models of
//! `tests/fixtures/train/` (torch + transformers + peft references from
//! `tools/oracles/train_fixtures.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train")
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A training file for the tiny Llama: LoRA with dropout, packed, longalign.
fn config(dir: &Path, name: &str, epochs: usize, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
output_dir = "{out}"
[model]
path = "{model}"
[data]
path = "{data}"
max_seq_len = 256
batching = "packed"
loss = "longalign"
[lora]
r = 4
alpha = 8
dropout = 0.1
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[optim]
lr = 1e-3
warmup_steps = 5
epochs = {epochs}
micro_batch_tokens = 100
seed = 7
{extra}
[output]
save_every = 5
"#,
        out = s(&dir.join("runs")),
        model = s(&fixtures().join("llama")),
        data = s(&fixtures().join("chats.jsonl")),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn loss_json(args: &[&str]) -> Value {
    let out = longctx(&[&["loss"], args, &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_run_killed_with_sigkill_and_resumed_ends_with_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 40;
    let whole = config(dir.path(), "whole", epochs, "");
    let out = longctx(&["train", s(&whole)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = std::fs::read(dir.path().join("runs/whole/adapter/adapter_model.safetensors")).unwrap();
    let record = json(&dir.path().join("runs/whole/run.json"));
    let total = record["total_steps"].as_u64().unwrap() as usize;
    assert!(total > 100, "{total} steps");

    // The same run under another name, killed once it is past a few checkpoints.
    let killed = config(dir.path(), "killed", epochs, "");
    let metrics = dir.path().join("runs/killed/metrics.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["train", s(&killed)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let steps = std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
        if steps >= 23 {
            break;
        }
        assert!(start.elapsed() < Duration::from_mins(5), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = std::fs::read_to_string(&metrics).unwrap().lines().count();
    assert!(at_kill < total, "the run finished before the kill ({at_kill} of {total})");
    assert!(!dir.path().join("runs/killed/adapter").exists());
    // Without --resume the directory is not overwritten.
    let out = longctx(&["train", s(&killed)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    let out = longctx(&["train", s(&killed), "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming from"), "{}", stderr(&out));
    let resumed = std::fs::read(dir.path().join("runs/killed/adapter/adapter_model.safetensors")).unwrap();
    assert!(resumed == reference, "the resumed run's adapter differs from the uninterrupted run's");
    // Every step appears once in the metrics, with the uninterrupted run's values.
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let a = lines(&dir.path().join("runs/whole/metrics.jsonl"));
    let b = lines(&metrics);
    assert_eq!(a.len(), total);
    assert_eq!(b.len(), total);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x["step"].clone(), x["loss"].clone(), x["lr"].clone()),
            (y["step"].clone(), y["loss"].clone(), y["lr"].clone())
        );
    }
    assert!(dir.path().join("runs/killed/loss.png").is_file() && dir.path().join("runs/killed/loss.svg").is_file());
    // A changed training file does not resume the run.
    let changed = config(dir.path(), "killed", epochs, "weight_decay = 0.1");
    let out = longctx(&["train", s(&changed), "--resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("differs from the run's"), "{}", stderr(&out));
}

#[test]
fn the_saved_adapter_has_peft_layout_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "short", 1, "");
    let out = longctx(&["train", s(&c), "--max-steps", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = dir.path().join("runs/short/adapter");
    let peft = fixtures().join("adapter_llama");
    // The same tensor names, shapes and dtype as the adapter peft saved for this model.
    let names = |d: &Path| -> Vec<(String, Vec<usize>, String)> {
        let bytes = std::fs::read(d.join("adapter_model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let mut v: Vec<_> = header
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, t)| (k.clone(), serde_json::from_value(t["shape"].clone()).unwrap(), t["dtype"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&ours), names(&peft));
    let cfg = json(&ours.join("adapter_config.json"));
    let reference = json(&peft.join("adapter_config.json"));
    for key in ["peft_type", "task_type", "r", "lora_alpha", "bias", "use_rslora", "use_dora", "fan_in_fan_out"] {
        assert_eq!(cfg[key], reference[key], "{key}");
    }
    let mut targets: Vec<String> = serde_json::from_value(cfg["target_modules"].clone()).unwrap();
    let mut want: Vec<String> = serde_json::from_value(reference["target_modules"].clone()).unwrap();
    targets.sort();
    want.sort();
    assert_eq!(targets, want);
    assert_eq!(cfg["base_model_name_or_path"], s(&fixtures().join("llama")));
    // It loads back: the trained adapter changes the loss.
    let data = fixtures().join("chats.jsonl");
    let model = fixtures().join("llama");
    let base = loss_json(&["--model", s(&model), "--data", s(&data), "--max-seq-len", "4096"]);
    let with = loss_json(&["--model", s(&model), "--adapter", s(&ours), "--data", s(&data), "--max-seq-len", "4096"]);
    assert_ne!(base["loss"], with["loss"]);
}

#[test]
fn loss_equals_the_reference_with_and_without_adapters() {
    let losses = json(&fixtures().join("losses.json"));
    let lora = json(&fixtures().join("lora.json"));
    let data = fixtures().join("chats.jsonl");
    for (model, adapter) in [("llama", "adapter_llama"), ("qwen2", "adapter_qwen2_rslora")] {
        let m = fixtures().join(model);
        let a = fixtures().join(adapter);
        for (kind, key) in [("token-mean", "token_mean"), ("longalign", "longalign")] {
            for batching in ["naive", "sorted", "packed"] {
                let base = [
                    "--model",
                    s(&m),
                    "--data",
                    s(&data),
                    "--max-seq-len",
                    "4096",
                    "--loss",
                    kind,
                    "--batching",
                    batching,
                ];
                let v = loss_json(&base);
                let want = losses["models"][model][key].as_f64().unwrap();
                assert!((v["loss"].as_f64().unwrap() - want).abs() < 1e-5, "{model} {kind} {batching}: {v} vs {want}");
                assert_eq!(v["sequences"], 24);
                let v = loss_json(&[&base[..], &["--adapter", s(&a)]].concat());
                let want = lora["adapters"][adapter][key].as_f64().unwrap();
                assert!(
                    (v["loss"].as_f64().unwrap() - want).abs() < 1e-5,
                    "{adapter} {kind} {batching}: {v} vs {want}"
                );
            }
            let r48 = &losses["models"][model]["max_seq_len_48"]["truncate"];
            let v =
                loss_json(&["--model", s(&m), "--data", s(&data), "--max-seq-len", "48", "--truncate", "--loss", kind]);
            assert!((v["loss"].as_f64().unwrap() - r48[key].as_f64().unwrap()).abs() < 1e-5, "{model} 48 {kind}");
            assert_eq!(v["sequences"].as_u64().unwrap() as usize, r48["samples"].as_array().unwrap().len());
        }
    }
}

#[test]
fn perplexity_through_a_peft_adapter_equals_peft() {
    let lora = json(&fixtures().join("lora.json"));
    let dir = tempfile::tempdir().unwrap();
    for (model, adapter) in [("llama", "adapter_llama"), ("qwen2", "adapter_qwen2_rslora")] {
        let reference = &lora["adapters"][adapter]["perplexity"];
        let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
        // The text whose tokens these are.
        let tok = tokenizers::Tokenizer::from_file(fixtures().join(model).join("tokenizer.json")).unwrap();
        let text = tok.decode(&ids, false).unwrap();
        assert_eq!(
            tok.encode(text.as_str(), false).unwrap().get_ids(),
            &ids[..],
            "{model}: the text re-encodes differently"
        );
        let file = dir.path().join(format!("{model}.txt"));
        std::fs::write(&file, &text).unwrap();
        let m = fixtures().join(model);
        let a = fixtures().join(adapter);
        let out = longctx(&[
            "perplexity",
            "--model",
            s(&m),
            "--adapter",
            s(&a),
            "--file",
            s(&file),
            "--context",
            "120",
            "--per-token",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let got: Vec<f64> = serde_json::from_value(v["per_token_nll"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(reference["nll"].clone()).unwrap();
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{adapter}: per-token NLL off by {worst}");
    }
}

#[test]
fn a_merged_model_equals_the_model_with_its_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged");
    let m = fixtures().join("llama");
    let a = fixtures().join("adapter_llama");
    let out = longctx(&["merge", "--model", s(&m), "--adapter", s(&a), "--out", s(&merged)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("merged 14 weights"), "{}", stderr(&out));
    let data = fixtures().join("chats.jsonl");
    let with = loss_json(&["--model", s(&m), "--adapter", s(&a), "--data", s(&data), "--max-seq-len", "4096"]);
    let merged_loss = loss_json(&["--model", s(&merged), "--data", s(&data), "--max-seq-len", "4096"]);
    assert!((with["loss"].as_f64().unwrap() - merged_loss["loss"].as_f64().unwrap()).abs() < 1e-5);
    // The output directory is never overwritten.
    let again = longctx(&["merge", "--model", s(&m), "--adapter", s(&a), "--out", s(&merged)]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn bad_input_is_named_and_leaves_no_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("runs/bad");
    let expect_error = |data: &str, extra: &str, needle: &str| {
        let file = dir.path().join("data.jsonl");
        std::fs::write(&file, data).unwrap();
        let text = std::fs::read_to_string(config(dir.path(), "bad", 1, extra)).unwrap();
        let text = text.replace(s(&fixtures().join("chats.jsonl")), s(&file));
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = longctx(&["train", s(&path)]);
        assert_eq!(out.status.code(), Some(2), "{needle}");
        assert!(stderr(&out).contains(needle), "wanted {needle:?} in {}", stderr(&out));
        assert!(!run_dir.exists(), "{needle}: a run directory was left");
    };
    let good = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;
    expect_error(
        &format!("{good}\n{}\n", r#"{"messages": [{"role": "narrator", "content": "x"}]}"#),
        "",
        "data.jsonl:2: message 0 has role `narrator`",
    );
    expect_error(
        &format!("{good}\n{good}\n{}\n", r#"{"messages": [{"role": "user", "content": "x"}]}"#),
        "",
        "data.jsonl:3: the conversation has no assistant turn",
    );
    expect_error(&format!("{good}\nnot json\n"), "", "data.jsonl:2: not a conversation");
    let long = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}, {{"role": "assistant", "content": "ok"}}]}}"#,
        "word ".repeat(200)
    );
    expect_error(
        &format!("{long}\n"),
        "",
        "no conversation is left to train on: 1 of 1 are longer than max_seq_len = 256",
    );

    // A template that refuses a conversation (roles must alternate), named by line.
    let model = dir.path().join("strict");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("llama").join(f), model.join(f)).unwrap();
    }
    let mut tc = json(&fixtures().join("llama/tokenizer_config.json"));
    tc["chat_template"] = Value::from(
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}{% endif %}{{ m['role'] + ': ' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}",
    );
    std::fs::write(model.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let file = dir.path().join("data.jsonl");
    let twice = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}"#;
    std::fs::write(&file, format!("{good}\n{twice}\n")).unwrap();
    let text = std::fs::read_to_string(config(dir.path(), "bad", 1, ""))
        .unwrap()
        .replace(s(&fixtures().join("chats.jsonl")), s(&file))
        .replace(s(&fixtures().join("llama")), s(&model));
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &text).unwrap();
    let out = longctx(&["train", s(&path)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("data.jsonl:2: chat template") && stderr(&out).contains("must alternate"),
        "{}",
        stderr(&out)
    );
    assert!(!run_dir.exists());
    // A model directory without its tokenizer.
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    std::fs::write(&file, format!("{good}\n")).unwrap();
    let out = longctx(&["train", s(&path)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tokenizer.json"), "{}", stderr(&out));
    assert!(!run_dir.exists());
    // An adapter for a model of other widths is refused, naming the tensor.
    let mut cfg = json(&fixtures().join("llama/config.json"));
    cfg["intermediate_size"] = Value::from(48);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("config.json"), cfg.to_string()).unwrap();
    let out = longctx(&[
        "merge",
        "--model",
        s(&other),
        "--adapter",
        s(&fixtures().join("adapter_llama")),
        "--out",
        s(&dir.path().join("m")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("adapter_model.safetensors: tensor `base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight`")
            && err.contains("this model needs [48, 4]"),
        "{err}"
    );
}

#[test]
fn full_fine_tuning_on_a_hub_dataset_writes_a_model_directory() {
    let chats = std::fs::read(fixtures().join("chats.jsonl")).unwrap();
    let port = common::serve(vec![("/datasets/THUDM/LongAlign-10k/resolve/main/long.jsonl".into(), chats)], 8);
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "full"
output_dir = "{out}"
full = true
[model]
path = "{model}"
[data]
hub = "THUDM/LongAlign-10k"
file = "long.jsonl"
max_seq_len = 256
loss = "token-mean"
[optim]
lr = 1e-3
micro_batch_tokens = 300
"#,
            out = s(&dir.path().join("runs")),
            model = s(&fixtures().join("llama")),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["train", s(&path), "--max-steps", "3"])
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("data: 24 conversations, 24 kept"), "{}", stderr(&out));
    let model = dir.path().join("runs/full/model");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(model.join(f).is_file(), "{f}");
    }
    let record = json(&dir.path().join("runs/full/run.json"));
    assert_eq!((record["status"].as_str(), record["steps_done"].as_u64()), (Some("complete"), Some(3)));
    // The written model loads, and three steps changed it.
    let data = fixtures().join("chats.jsonl");
    let before = loss_json(&["--model", s(&fixtures().join("llama")), "--data", s(&data), "--max-seq-len", "256"]);
    let after = loss_json(&["--model", s(&model), "--data", s(&data), "--max-seq-len", "256"]);
    assert!(after["loss"].as_f64().unwrap() < before["loss"].as_f64().unwrap(), "{before} -> {after}");
}

/// `--export DIR --engine E`: the job is written (nothing trained), `--gpus` overrides the file's
/// `[distributed] gpus`, and an unknown engine is refused by name.
#[test]
fn export_writes_a_job_and_refuses_an_unknown_engine() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "export", 2, "grad_accum = 2\n[distributed]\ngpus = 2\nsharding = \"zero3\"");
    let job = dir.path().join("job");
    let o = longctx(&["train", s(&file), "--export", s(&job), "--engine", "trl", "--gpus", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("on 4 GPU(s)"), "{}", stderr(&o));
    let launch = std::fs::read_to_string(job.join("launch.sh")).unwrap();
    assert!(launch.contains("--num_processes 4"), "{launch}");
    let ds: Value = json(&job.join("ds_config.json"));
    assert_eq!(ds["zero_optimization"]["stage"], 3);
    assert!(std::fs::read_to_string(job.join("config.yaml")).unwrap().contains("deepspeed: \"ds_config.json\""));
    // Two epochs, eight packs per step (4 GPUs × 2), every line of one step.
    let packs = std::fs::read_to_string(job.join("data/packs.jsonl")).unwrap();
    assert_eq!(packs.lines().count() % 8, 0);
    assert!(!dir.path().join("runs").exists(), "export trains nothing");
    let o = longctx(&["train", s(&file), "--export", s(&dir.path().join("other")), "--engine", "megatron"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown engine `megatron`: longctx exports to trl, axolotl or torchtune"),
        "{}",
        stderr(&o)
    );
}
