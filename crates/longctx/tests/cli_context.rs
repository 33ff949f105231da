//! `longctx embed`, `retrieve`, `compress` and `bench embed` against the reference fixtures
//! of longctx-context (sentence-transformers, naive RAG with numpy, llmlingua).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let path = root().join("crates/longctx-context/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn minilm() -> PathBuf {
    let dir = root().join("assets/minilm");
    assert!(dir.join("model.safetensors").exists(), "run tools/fetch_assets.sh first");
    dir
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn embed_writes_one_normalized_vector_per_line() {
    let fx = fixture("minilm_embeddings.json");
    let cases: Vec<&Value> = fx["cases"].as_array().unwrap().iter().take(6).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = cases.iter().map(|c| serde_json::json!({"text": c["text"]}).to_string()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let m = minilm();
    let args = ["embed", "--model", m.to_str().unwrap(), "--input", input.to_str().unwrap()];
    stdout(&longctx(&[&args[..], &["--batch-size", "4", "--out", out.to_str().unwrap()]].concat()));
    let written = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Value> = written.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), cases.len());
    for (row, case) in rows.iter().zip(&cases) {
        let got: Vec<f64> = serde_json::from_value(row["embedding"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(case["embedding"].clone()).unwrap();
        assert_eq!(got.len(), 384);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-5), "{}", case["name"]);
    }
    // Stdout gives the same lines.
    assert_eq!(stdout(&longctx(&args)), written);
    // bf16 dense layers: close to f32, not equal.
    let bf16 = stdout(&longctx(&[&args[..], &["--precision", "bf16"]].concat()));
    let mut worst = 0f64;
    for (line, case) in bf16.lines().zip(&cases) {
        let got: Vec<f64> =
            serde_json::from_value(serde_json::from_str::<Value>(line).unwrap()["embedding"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(case["embedding"].clone()).unwrap();
        worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(worst, f64::max);
    }
    assert!(worst > 1e-6 && worst < 5e-3, "bf16 max |Δ| {worst}");
    let bad = longctx(&[&args[..], &["--precision", "f8"]].concat());
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown precision `f8` (f32 or bf16)"), "{err}");
    // A malformed line is named.
    std::fs::write(&input, "{\"text\": \"ok\"}\nnot json\n").unwrap();
    let bad = longctx(&args);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("in.jsonl:2"), "{err}");
}

#[test]
fn retrieve_shows_what_naive_rag_feeds_the_model() {
    let fx = fixture("rag_topk.json");
    let sample = fx["samples"].as_array().unwrap().iter().find(|s| s["dataset"] == "qasper").unwrap();
    let data = std::fs::read_to_string(root().join("tests/data/longbench/qasper.jsonl")).unwrap();
    let record: Value =
        serde_json::from_str(data.lines().nth(sample["line"].as_u64().unwrap() as usize).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.txt");
    std::fs::write(&context, record["context"].as_str().unwrap()).unwrap();
    let m = minilm();
    let base = [
        "retrieve",
        "--embedder",
        m.to_str().unwrap(),
        "--query",
        record["input"].as_str().unwrap(),
        "--context-file",
        context.to_str().unwrap(),
    ];
    let v: Value = serde_json::from_str(&stdout(&longctx(&[&base[..], &["--k", "5", "--json"]].concat()))).unwrap();
    assert_eq!(v["n_chunks"], sample["n_chunks"]);
    assert_eq!(v["ids"], sample["doc_order_ids_k5"]);
    // bf16 embeddings: the same chunks, nearly the same choice.
    let b: Value =
        serde_json::from_str(&stdout(&longctx(&[&base[..], &["--k", "5", "--json", "--precision", "bf16"]].concat())))
            .unwrap();
    assert_eq!(b["n_chunks"], v["n_chunks"]);
    let ids = |x: &Value| -> Vec<u64> { x["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect() };
    let shared = ids(&b).iter().filter(|i| ids(&v).contains(i)).count();
    assert!(shared >= 4 && ids(&b).len() == 5, "bf16 ids {:?} vs f32 {:?}", ids(&b), ids(&v));
    assert_eq!(v["whole_context"], false);
    let n = sample["n_chunks"].as_u64().unwrap().to_string();
    let all: Value = serde_json::from_str(&stdout(&longctx(&[&base[..], &["--k", &n, "--json"]].concat()))).unwrap();
    assert_eq!(all["whole_context"], true);
    assert_eq!(all["text"], record["context"]);
    let text = stdout(&longctx(&[&base[..], &["--k", "5"]].concat()));
    assert!(text.starts_with(&format!("chunks: {}\nk: 5\nids: ", sample["n_chunks"])), "{text}");
    // A sweep: one JSON line per k, the k = 5 line as above, k = 20 as the reference ranks.
    let sweep = stdout(&longctx(&[&base[..], &["--k", "5,20", "--json"]].concat()));
    let rows: Vec<Value> = sweep.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["ids"], v["ids"]);
    let mut want: Vec<u64> = serde_json::from_value(sample["topk"]["20"]["ids_by_score"].clone()).unwrap();
    want.sort_unstable();
    assert_eq!(rows[1]["ids"], serde_json::json!(want));
}

#[test]
fn compress_prints_what_llmlingua_returns() {
    let tokenizer = root().join("assets/xlmr/tokenizer.json");
    assert!(tokenizer.exists(), "run tools/fetch_assets.sh first");
    let model = root().join("crates/longctx-context/tests/fixtures/llmlingua2_tiny");
    let fx = fixture("llmlingua2_cases.json");
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let kwargs = case["kwargs"].as_object().unwrap();
        let simple = kwargs.keys().all(|k| k == "rate" || k == "force_tokens");
        if !simple || !case["context"].is_string() || checked == 3 {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("text.txt");
        std::fs::write(&input, case["context"].as_str().unwrap()).unwrap();
        let rate = kwargs["rate"].to_string();
        let mut args: Vec<String> = [
            "compress",
            "--model",
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--rate",
            &rate,
            "--input",
            input.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        for t in kwargs.get("force_tokens").and_then(Value::as_array).into_iter().flatten() {
            args.push("--force-token".into());
            args.push(t.as_str().unwrap().replace('\n', "\\n"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let got: Value = serde_json::from_str(&stdout(&longctx(&refs))).unwrap();
        for key in ["compressed_prompt", "origin_tokens", "compressed_tokens", "rate", "ratio"] {
            assert_eq!(got[key], case["result"][key], "{}: {key}", case["id"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn bench_embed_reports_chunks_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> =
        (0..8).map(|i| serde_json::json!({"text": format!("chunk number {i} of the benchmark")}).to_string()).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let m = minilm();
    let args = [
        "bench",
        "embed",
        "--model",
        m.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--threads",
        "1",
        "--json",
    ];
    let v: Value = serde_json::from_str(&stdout(&longctx(&args))).unwrap();
    assert_eq!(v["chunks"], 8);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["precision"], "f32");
    assert!(v["amx"].is_boolean());
    assert!(v["chunks_per_s"].as_f64().unwrap() > 0.0);
    let v: Value = serde_json::from_str(&stdout(&longctx(&[&args[..], &["--precision", "bf16"]].concat()))).unwrap();
    assert_eq!(v["precision"], "bf16");
    assert_eq!(v["chunks"], 8);
}
