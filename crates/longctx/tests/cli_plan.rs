//! `longctx plan train`: the JSON contract, the text report and clear errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name).display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn json_has_the_breakdown_verdict_longest_sequence_and_suggestions() {
    let model = fixture("plan/llama-3.1-8b.json");
    let out = longctx(&["plan", "train", "--model", &model, "--seq-len", "65536", "--full", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = p["parts"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "weights",
            "gradients",
            "optimizer_states",
            "activations",
            "attention_workspace",
            "logits",
            "temporary_buffers",
            "runtime"
        ]
    );
    let sum: f64 = p["parts"].as_array().unwrap().iter().map(|x| x["bytes"].as_f64().unwrap()).sum();
    assert!((sum - p["peak_bytes"].as_f64().unwrap()).abs() < 1.0);
    assert_eq!(p["fits"], false);
    assert_eq!(p["budget_bytes"].as_f64().unwrap(), 80.0 * (1u64 << 30) as f64);
    assert!(p["over_by_bytes"].as_f64().unwrap() > 0.0);
    assert!(p["max_seq_len"].as_u64().unwrap() < 65_536);
    assert!(p["suggestions"].as_array().unwrap().iter().any(|s| s["fits"] == true));
    assert_eq!(p["params"].as_f64().unwrap(), 8_030_261_248.0);

    // The text report says the same.
    let text = longctx(&["plan", "train", "--model", &model, "--seq-len", "65536", "--full"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("OUT OF MEMORY"), "{text}");
    assert!(text.contains("longest sequence that fits"), "{text}");
    assert!(text.contains("--checkpointing layer"), "{text}");
}

#[test]
fn a_gguf_file_and_a_model_directory_are_read_for_their_shape() {
    for model in [fixture("tiny/smollm2_tied/model-f32.gguf"), fixture("train/llama")] {
        let out = longctx(&[
            "plan",
            "train",
            "--model",
            &model,
            "--seq-len",
            "64",
            "--trainer",
            "longctx",
            "--memory-gib",
            "4",
            "--json",
        ]);
        assert!(out.status.success(), "{model}: {}", stderr(&out));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(p["spec"]["shape"]["hidden"], 32, "{model}");
        assert_eq!(p["fits"], true);
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let gpt2 = dir.path().join("config.json");
    std::fs::write(
        &gpt2,
        r#"{"model_type": "gpt2", "vocab_size": 50257, "hidden_size": 768, "intermediate_size": 3072,
            "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 1024, "hidden_act": "silu"}"#,
    )
    .unwrap();
    let model = fixture("plan/llama-3.1-8b.json");
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--model", gpt2.to_str().unwrap(), "--seq-len", "1024"], "model_type `gpt2`"),
        (
            vec!["--model", &model, "--seq-len", "1024", "--gpus", "4", "--micro-batch", "6"],
            "not divisible by --gpus 4",
        ),
        (vec!["--model", &model, "--seq-len", "1024", "--zero", "3"], "--zero 3 with one GPU"),
        (vec!["--model", &model, "--seq-len", "1024", "--full", "--base-quant", "nf4"], "needs --lora"),
        (vec!["--model", &model, "--seq-len", "1024", "--optimizer", "sgd"], "unknown --optimizer `sgd`"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["plan", "train"];
        all.extend(args.iter().copied());
        let out = longctx(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}
