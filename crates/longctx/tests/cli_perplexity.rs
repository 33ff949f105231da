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

/// transformers' per-token NLL of `model` with windows of `context` moved by `stride`
/// (tests/fixtures/tiny/perplexity.json).
fn transformers_nll(model: &str, context: u64, stride: u64) -> Vec<f64> {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("perplexity.json")).unwrap()).unwrap();
    fixture["settings"][model]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["context"] == context && s["stride"] == stride)
        .unwrap()["per_token_nll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn json_per_token_equals_transformers() {
    let (got, raw) = perplexity_json(&["--stride", "64", "--per-token"]);
    assert_eq!(got.as_object().unwrap().len(), 4);
    let at = |k: &str| raw.find(&format!("\"{k}\"")).unwrap_or_else(|| panic!("no {k} in {raw}"));
    assert!(at("tokens") < at("nll_sum") && at("nll_sum") < at("ppl") && at("ppl") < at("per_token_nll"));
    let want = transformers_nll("llama_dynamic2", 128, 64);
    let got_nll = got["per_token_nll"].as_array().unwrap();
    assert_eq!(got["tokens"].as_u64().unwrap() as usize, want.len());
    assert_eq!(got_nll.len(), want.len());
    for (g, w) in got_nll.iter().zip(&want) {
        assert!((g.as_f64().unwrap() - w).abs() <= 1e-4);
    }
    let sum: f64 = want.iter().sum();
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

/// `--lengths`: perplexity of the first N tokens per length and RoPE variant. On the plain-RoPE
/// tiny Llama each point is the sum of transformers' per-token NLLs over the first window's first
/// N − 1 tokens (a causal model scores a prefix the same in a longer window); dynamic NTK equals
/// the model's own RoPE up to its 64 positions and departs after; linear ×4 departs at once.
#[test]
fn lengths_sweep_every_variant_and_equal_transformers() {
    let first_window: Vec<f64> = transformers_nll("llama", 128, 64).into_iter().take(127).collect();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("ppl.svg");
    let model = tiny().join("llama");
    let text = tiny().join("text.txt");
    let out = longctx(&[
        "perplexity",
        "--model",
        model.to_str().unwrap(),
        "--file",
        text.to_str().unwrap(),
        "--lengths",
        "100,16,64",
        "--rope-scaling",
        "none",
        "--rope-scaling",
        "dynamic:4",
        "--rope-scaling",
        "linear:4",
        "--plot",
        plot.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let variants = got["variants"].as_array().unwrap();
    let names: Vec<&str> = variants.iter().map(|v| v["rope_scaling"].as_str().unwrap()).collect();
    assert_eq!(names, ["none", "dynamic:4", "linear:4"]);
    let nll = |v: usize, i: usize| variants[v]["points"][i]["nll_sum"].as_f64().unwrap();
    for (i, length) in [16usize, 64, 100].into_iter().enumerate() {
        let p = &variants[0]["points"][i];
        assert_eq!((p["length"].as_u64(), p["tokens"].as_u64()), (Some(length as u64), Some(length as u64 - 1)));
        let want: f64 = first_window[..length - 1].iter().sum();
        assert!((nll(0, i) - want).abs() < 2e-3, "length {length}: {} vs transformers {want}", nll(0, i));
        assert!((nll(2, i) - nll(0, i)).abs() > 1e-2, "linear ×4 changes every length");
    }
    assert_eq!(nll(1, 0), nll(0, 0));
    assert_eq!(nll(1, 1), nll(0, 1));
    assert!((nll(1, 2) - nll(0, 2)).abs() > 1e-2, "dynamic NTK past 64 positions");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("linear:4") && svg.contains("perplexity"), "{svg}");

    let too_long = longctx(&[
        "perplexity",
        "--model",
        model.to_str().unwrap(),
        "--file",
        text.to_str().unwrap(),
        "--lengths",
        "100000",
    ]);
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("shorter than --lengths 100000"));
}
