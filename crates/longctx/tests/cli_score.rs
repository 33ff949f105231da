//! `longctx score` and `longctx datasets` as users call them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary copy of a fixture prediction directory.
fn copy_preds(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/oracles").join(fixture).join("preds");
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn writes_result_json_identical_to_eval_py() {
    let fixture = root().join("tests/fixtures/oracles/longbench_real");
    let dir = copy_preds("longbench_real");
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(dir.path().join("result.json")).unwrap();
    assert_eq!(written, std::fs::read_to_string(fixture.join("result.json")).unwrap());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("passage_retrieval_zh") && table.contains("retrieval_zh_score"), "{table}");
    assert!(table.contains("average"), "{table}");

    // Scoring again ignores result.json (not a *.jsonl file) and gives the same bytes.
    let out = longctx(&["score", dir.path().to_str().unwrap(), "--longbench-e", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want_e = std::fs::read_to_string(fixture.join("result_e.json")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end(), want_e);
    assert_eq!(std::fs::read_to_string(dir.path().join("result.json")).unwrap(), want_e);
}

#[test]
fn fuzz_backend_flag_selects_levenshtein() {
    let fixture = root().join("tests/fixtures/oracles/longbench_metrics");
    let dir = copy_preds("longbench_metrics");
    let out_file = dir.path().join("lev.json");
    let out = longctx(&[
        "score",
        dir.path().to_str().unwrap(),
        "--fuzz",
        "levenshtein",
        "--output",
        out_file.to_str().unwrap(),
        "--per-sample",
        dir.path().join("samples.jsonl").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(out_file).unwrap(),
        std::fs::read_to_string(fixture.join("result_levenshtein.json")).unwrap()
    );
    let samples = std::fs::read_to_string(dir.path().join("samples.jsonl")).unwrap();
    assert!(samples.lines().count() >= 3000);
    let bad = longctx(&["score", dir.path().to_str().unwrap(), "--fuzz", "rapid"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn malformed_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qasper.jsonl"),
        "{\"pred\": \"a\", \"answers\": [\"a\"], \"all_classes\": null, \"length\": 10}\n{\"pred\": \"a\", \"answers\": \n",
    )
    .unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("qasper.jsonl:2:"), "{err}");
    assert!(!dir.path().join("result.json").exists());

    // A blank line between predictions is named; trailing blank lines are fine.
    let line = "{\"pred\": \"x\", \"answers\": [\"x\"], \"all_classes\": null, \"length\": 10}\n";
    std::fs::write(dir.path().join("qasper.jsonl"), format!("{line}\n{line}")).unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("qasper.jsonl:2: blank line between predictions"), "{}", stderr(&out));
    std::fs::write(dir.path().join("qasper.jsonl"), format!("{line}{line}\n\n")).unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unknown_dataset_lists_known_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hotpot_qa.jsonl"), "{\"pred\": \"a\", \"answers\": [\"a\"]}\n").unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("hotpot_qa.jsonl"), "{err}");
    assert!(err.contains("did you mean `hotpotqa`"), "{err}");
    assert!(err.contains("narrativeqa, qasper, multifieldqa_en"), "{err}");
}

#[test]
fn empty_dir_and_empty_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no prediction files"), "{}", stderr(&out));

    std::fs::write(dir.path().join("trec.jsonl"), "").unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("trec.jsonl: the file holds no predictions"), "{}", stderr(&out));

    let out = longctx(&["score", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn longbench_e_needs_lengths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qasper.jsonl"), "{\"pred\": \"x\", \"answers\": [\"x\"], \"all_classes\": null}\n")
        .unwrap();
    let out = longctx(&["score", dir.path().to_str().unwrap(), "--longbench-e"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("qasper.jsonl:1: no `length`"), "{}", stderr(&out));
    // Without -e the same file scores.
    let out = longctx(&["score", dir.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "{\n    \"qasper\": 100.0\n}\n");
}

#[test]
fn datasets_lists_and_loads() {
    let out = longctx(&["datasets"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 22, "{text}");
    let data = root().join("tests/data/longbench");
    let out = longctx(&["datasets", "trec", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8(out.stdout).unwrap().contains("trec: 1 samples"));
    let out = longctx(&["datasets", "lsht", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no `lsht.jsonl`"), "{}", stderr(&out));
}

#[test]
fn hub_download_failure_is_explained() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["datasets", "qasper", "--data", "hub"])
        // Nothing listens on port 9 of the loopback address; the cache is empty.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("THUDM/LongBench") && err.contains("Hugging Face hub"), "{err}");
    assert!(err.contains("download LongBench's data.zip elsewhere"), "{err}");
}
