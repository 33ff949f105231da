//! `metrics::jieba::cut` against jieba 0.42.1 (`jieba.cut(text, cut_all=False)`) (fixtures
//! from `tools/oracles/longbench_scoring.py`, made from the 400 Chinese records of the reference
//! LongBench files): on every input and answer and on excerpts of those records and hand-made hard
//! strings (`cases.jsonl`, self-contained), and on the full contexts of the records the
//! repository ships in tests/data/longbench (the first 20 of multifieldqa_zh and
//! passage_retrieval_zh: 40 of the 400 entries of `contexts.jsonl`, which hold only token counts
//! and digests).

use std::path::{Path, PathBuf};

use longctx_bench::metrics::jieba::cut;
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: Vec<String>,
    source: Option<String>,
}

#[test]
fn tokens_equal_jieba_on_inputs_answers_excerpts_and_hard_strings() {
    let path = root().join("tests/fixtures/oracles/jieba/cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let case: Case = serde_json::from_str(line).unwrap();
        assert_eq!(cut(&case.text), case.tokens, "{:?}: {:?}", case.source, case.text);
        n += 1;
    }
    assert!(n >= 800, "{n} cases");
}

#[derive(Deserialize)]
struct Context {
    file: String,
    line: usize,
    n_tokens: usize,
    sha256: String,
}

#[test]
fn full_contexts_segment_like_jieba() {
    let data = root().join("tests/data/longbench");
    let path = root().join("tests/fixtures/oracles/jieba/contexts.jsonl");
    let expected: Vec<Context> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(expected.len(), 400);
    let mut files = std::collections::HashMap::new();
    let mut checked = 0;
    for e in &expected {
        let lines = files.entry(e.file.clone()).or_insert_with(|| {
            let path = data.join(&e.file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            text.lines().map(str::to_string).collect::<Vec<_>>()
        });
        // The repository holds the first lines of each file; the fixture covers all of them.
        let Some(line) = lines.get(e.line - 1) else { continue };
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let tokens = cut(record["context"].as_str().unwrap());
        assert_eq!(tokens.len(), e.n_tokens, "{}:{}", e.file, e.line);
        let digest = Sha256::digest(tokens.join("\n").as_bytes());
        let hex = digest.iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
        assert_eq!(hex, e.sha256, "{}:{}", e.file, e.line);
        checked += 1;
    }
    assert_eq!(checked, 40, "lines 1..=20 of multifieldqa_zh and passage_retrieval_zh");
}
