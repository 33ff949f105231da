//! `--data hub`: LongBench's data.zip through hf-hub, against a minimal local stand-in for the
//! Hugging Face hub (loopback only, a bounded number of connections); and `--model org/name`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A data.zip holding `data/qasper.jsonl` (the real qasper record) and `data/qasper_e.jsonl`.
fn data_zip() -> Vec<u8> {
    let record = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/longbench-sample/qasper.jsonl"))
        .expect("shipped sample");
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for name in ["data/qasper.jsonl", "data/qasper_e.jsonl"] {
        zip.start_file(name, options).unwrap();
        zip.write_all(&record).unwrap();
        zip.write_all(&record).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

#[test]
fn loads_longbench_and_longbench_e_from_the_hub() {
    let port = common::serve(vec![("/datasets/THUDM/LongBench/resolve/main/data.zip".into(), data_zip())], 16);
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_longctx"))
            .args(args)
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("HF_HOME", home.path())
            .output()
            .unwrap()
    };
    let out = run(&["datasets", "qasper", "--data", "hub"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("qasper: 2 samples"), "{text}");
    // The second load reads the cached archive (LongBench-E member this time).
    let out = run(&["datasets", "qasper", "--data", "hub", "--longbench-e"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("qasper: 2 samples"));
    // A dataset that the archive lacks is named.
    let out = run(&["datasets", "trec", "--data", "hub"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data/trec.jsonl"), "{err}");
}

#[test]
fn loads_a_model_by_hub_id() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/llama");
    let files = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|f| (format!("/tiny-org/llama/resolve/main/{f}"), std::fs::read(tiny.join(f)).unwrap()))
        .collect();
    let port = common::serve(files, 32);
    let home = tempfile::tempdir().unwrap();
    let args = ["generate", "--prompt", "The senator said", "--max-new-tokens", "6", "--json", "--model"];
    let run = |model: &str| {
        Command::new(env!("CARGO_BIN_EXE_longctx"))
            .args(args)
            .arg(model)
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("HF_HOME", home.path())
            .output()
            .unwrap()
    };
    let hub = run("tiny-org/llama");
    assert!(hub.status.success(), "{}", String::from_utf8_lossy(&hub.stderr));
    let local = run(tiny.to_str().unwrap());
    let tokens =
        |o: &std::process::Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["tokens"].clone();
    assert_eq!(tokens(&hub), tokens(&local));
    // A repository the hub does not have is named in the error.
    let missing = run("tiny-org/absent");
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("tiny-org/absent") && err.contains("config.json"), "{err}");
}
