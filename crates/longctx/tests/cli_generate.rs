//! `longctx generate` on a tiny random-weight model (tests/fixtures/tiny).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny").join(name)
}

fn generate(extra: &[&str]) -> Output {
    let model = tiny("llama");
    let mut args = vec!["generate", "--model", model.to_str().unwrap(), "--prompt", "The senator said on Tuesday that"];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(&args).output().expect("runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn greedy_json_is_deterministic_and_complete() {
    let a = json(&generate(&["--max-new-tokens", "12", "--json"]));
    let b = json(&generate(&["--max-new-tokens", "12", "--json"]));
    assert_eq!(a["tokens"], b["tokens"]);
    for key in [
        "text",
        "tokens",
        "prompt_tokens",
        "completion_tokens",
        "prefill_s",
        "decode_s",
        "stop_reason",
        "kv_cache_bytes",
    ] {
        assert!(a.get(key).is_some(), "missing {key}: {a}");
    }
    let n = a["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&n));
    assert_eq!(a["tokens"].as_array().unwrap().len() as u64, n);
    // 2 (k, v) x 2 layers x 2 kv heads x 8 dims x (prompt + 12) tokens x 4 bytes.
    let total = a["prompt_tokens"].as_u64().unwrap() + 12;
    assert_eq!(a["kv_cache_bytes"].as_u64().unwrap(), 2 * 2 * 2 * 8 * total * 4);
}

#[test]
fn seeded_sampling_repeats_and_differs_by_seed() {
    let args = ["--max-new-tokens", "20", "--temperature", "1.0", "--json"];
    let a = json(&generate(&[&args[..], &["--seed", "1"]].concat()));
    let b = json(&generate(&[&args[..], &["--seed", "1"]].concat()));
    let c = json(&generate(&[&args[..], &["--seed", "2"]].concat()));
    assert_eq!(a["tokens"], b["tokens"]);
    assert_ne!(a["tokens"], c["tokens"]);
}

#[test]
fn refusals_are_explained() {
    let out = generate(&["--memory-limit-gib", "0.00001"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("over the limit") && err.contains("KV cache"), "{err}");
    let out = generate(&["--chat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no chat template"));
}

#[test]
fn bench_generate_reports_throughput_and_memory() {
    let model = tiny("llama");
    let out = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args([
            "bench",
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt-tokens",
            "32,300",
            "--gen-tokens",
            "4",
        ])
        .args(["--threads", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["prompt_tokens"], 300);
    assert_eq!(rows[1]["gen_tokens"], 4);
    assert!(rows[1]["prefill_tok_s"].as_f64().unwrap() > 0.0);
    assert!(rows[1]["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(rows[1]["full_score_matrix_bytes"], 304 * 304 * 4);
}

/// Regression (issue 6): a prompt of one token went through the decode kernel with a cache
/// view whose row stride it rejected.
#[test]
fn a_one_token_prompt_generates() {
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.exists(), "run tools/fetch_assets.sh first");
    let out = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["generate", "--model", gguf.to_str().unwrap(), "--prompt", "Hello", "--max-new-tokens", "4", "--json"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["prompt_tokens"], 1);
    assert_eq!(v["completion_tokens"], 4);
}
