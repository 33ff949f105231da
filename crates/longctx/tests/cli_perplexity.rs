//! `longctx perplexity` on the tiny models (fixtures from tools/oracles/tiny_perplexity.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny")
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

/// `longctx perplexity` on llama_dynamic2 and text.txt with windows of 128 and `extra` flags.
fn perplexity_json(extra: &[&str]) -> (serde_json::Value, String) {
    let model = tiny().join("llama_dynamic2");
    let text = tiny().join("text.txt");
    let mut args =
        vec!["perplexity", "--model", model.to_str().unwrap(), "--file", text.to_str().unwrap(), "--context", "128"];
    args.extend_from_slice(extra);
    args.push("--json");
    let out = longctx(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let raw = String::from_utf8(out.stdout).unwrap();
    (serde_json::from_str(&raw).unwrap(), raw)
}

#[test]
fn json_per_token_equals_transformers() {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("perplexity.json")).unwrap()).unwrap();
    let (got, raw) = perplexity_json(&["--stride", "64", "--per-token"]);
    assert_eq!(got.as_object().unwrap().len(), 4);
    let at = |k: &str| raw.find(&format!("\"{k}\"")).unwrap_or_else(|| panic!("no {k} in {raw}"));
    assert!(at("tokens") < at("nll_sum") && at("nll_sum") < at("ppl") && at("ppl") < at("per_token_nll"));
    let want = fixture["settings"]["llama_dynamic2"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["context"] == 128 && s["stride"] == 64)
        .unwrap()["per_token_nll"]
        .as_array()
        .unwrap()
        .clone();
    let got_nll = got["per_token_nll"].as_array().unwrap();
    assert_eq!(got["tokens"].as_u64().unwrap() as usize, want.len());
    assert_eq!(got_nll.len(), want.len());
    for (g, w) in got_nll.iter().zip(&want) {
        assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4);
    }
    let sum: f64 = want.iter().map(|w| w.as_f64().unwrap()).sum();
    assert!((got["nll_sum"].as_f64().unwrap() - sum).abs() < 1e-2);

    // A RoPE override changes the scores; without --per-token the list is empty.
    let (other, _) = perplexity_json(&["--rope-scaling", "linear:2"]);
    assert_eq!(other["per_token_nll"].as_array().unwrap().len(), 0);
    assert_ne!(other["nll_sum"], got["nll_sum"]);
}

#[test]
fn bad_arguments_are_explained() {
    let model = tiny().join("llama");
    let text = tiny().join("text.txt");
    let run = |extra: &[&str]| {
        let mut args = vec!["perplexity", "--model", model.to_str().unwrap(), "--file", text.to_str().unwrap()];
        args.extend_from_slice(extra);
        longctx(&args)
    };
    let out = run(&["--context", "64", "--rope-scaling", "cubic:2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected KIND:FACTOR"));
    let out = run(&["--context", "64", "--stride", "65"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stride between 1 and --context"));
    let out = longctx(&["perplexity", "--model", "/nonexistent", "--file", "x", "--context", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or directory, and not a hub repository id"));
}
