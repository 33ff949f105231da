//! A synthetic run directory, as `longctx run` would write it: five variants (full,
//! truncate-end, and a RAG k sweep 5/20/100) on four datasets, `result.json` from the bench
//! scorer for all variants but `rag-k100` (an interrupted run), and one failed sample.

use std::fmt::Write as _;
use std::path::Path;

use longctx_bench::score::{score_dir, ScoreOptions};
use serde_json::{json, Value};

pub(crate) const DATASETS: [&str; 4] = ["multi_news", "qasper", "trec", "passage_retrieval_zh"];

/// `(name, group, k, quality)`: the share of samples a variant gets right.
pub(crate) const VARIANTS: [(&str, &str, u64, f64); 5] = [
    ("full", "full", 0, 0.9),
    ("truncate-end", "truncate-end", 0, 0.5),
    ("rag-k5", "rag", 5, 0.6),
    ("rag-k20", "rag", 20, 0.75),
    ("rag-k100", "rag", 100, 0.85),
];

const LENGTHS: [u64; 6] = [1500, 3000, 5000, 7000, 9000, 15000];

const SUMMARY: &str = "The city council approved a new budget on Tuesday that raises funding for public \
                       schools and road repairs while cutting the cost of city parking permits";

const TREC_CLASSES: [&str; 6] = ["Abbreviation", "Entity", "Description", "Location", "Numeric value", "Human being"];

fn prediction(dataset: &str, sample: usize, correct: bool, quality: f64) -> (String, Vec<String>, Value) {
    match dataset {
        "multi_news" => {
            let words: Vec<&str> = SUMMARY.split(' ').collect();
            let keep = ((words.len() as f64) * if correct { quality } else { quality / 3.0 }) as usize;
            let pred = format!("{} officials said more details would follow", words[..keep].join(" "));
            (pred, vec![SUMMARY.to_string()], Value::Null)
        }
        "qasper" => {
            let answer = ["forty two", "the BLEU score", "yes", "three annotators", "English and German", "no"][sample];
            (if correct { answer } else { "unanswerable" }.to_string(), vec![answer.to_string()], Value::Null)
        }
        "trec" => {
            let answer = TREC_CLASSES[sample % TREC_CLASSES.len()];
            let wrong = TREC_CLASSES[(sample + 1) % TREC_CLASSES.len()];
            let pred = format!("{}\nQuestion: what is", if correct { answer } else { wrong });
            (pred, vec![answer.to_string()], json!(TREC_CLASSES))
        }
        "passage_retrieval_zh" => {
            let answer = format!("段落{}", sample + 3);
            let pred = if correct { format!("答案是{answer}") } else { "段落1".to_string() };
            (pred, vec![answer], Value::Null)
        }
        other => panic!("no synthetic data for {other}"),
    }
}

/// Writes the run into `dir` (which must exist).
pub(crate) fn synthetic_run(dir: &Path) {
    let variants: Vec<Value> = VARIANTS
        .iter()
        .map(|(name, group, k, _)| {
            let (strategy, params) = match *k {
                0 if *name == "full" => (json!({"kind": "full"}), json!({})),
                0 => (json!({"kind": "truncate", "side": "end"}), json!({})),
                k => (json!({"kind": "rag", "k": k, "chunk_tokens": 64}), json!({"k": k})),
            };
            json!({"name": name, "model": "smollm2", "strategy": strategy, "group": group, "params": params})
        })
        .collect();
    let manifest = json!({
        "schema_version": 1, "experiment": "quickstart", "config_hash": "9f2c".repeat(16),
        "config": {"benchmark": {"suite": "longbench"}}, "longctx_version": "0.1.0", "git_hash": "abc123",
        "suite": "longbench", "baseline": "full", "datasets": DATASETS, "variants": variants,
        "models": [{"name": "smollm2", "backend": "native", "describe": "native:SmolLM2-135M-Instruct.Q4_1.gguf"}],
        "started_at": "2026-11-29T12:00:00Z", "finished_at": "2026-11-29T12:10:00Z", "status": "complete",
        "totals": {"samples": 120, "failed": 1, "cost_usd": 0.01, "prompt_tokens": 123_456, "completion_tokens": 5678}
    });
    fs_err::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();

    for (name, _, k, quality) in VARIANTS {
        let vdir = dir.join(name);
        fs_err::create_dir_all(&vdir).unwrap();
        for (d, dataset) in DATASETS.iter().enumerate() {
            let mut lines = String::new();
            for (i, length) in LENGTHS.iter().enumerate() {
                // A small model: the full context finds no Chinese passage at all.
                let correct = ((i * 7 + d * 3) % 10) as f64 / 10.0 < quality
                    && !(name == "full" && *dataset == "passage_retrieval_zh");
                let (pred, answers, all_classes) = prediction(dataset, i, correct, quality);
                let original = length * 13 / 10;
                let budget = match (name, k) {
                    ("full", _) => 2048,
                    (_, 0) => 1024,
                    (_, k) => k * 64 + 200,
                };
                let prompt = original.min(budget);
                let line = json!({
                    "pred": pred, "answers": answers, "all_classes": all_classes, "length": length,
                    "id": format!("{dataset}-{i}"), "strategy": name,
                    "prompt_tokens": prompt, "original_tokens": original,
                    "context_tokens_before": original - 60, "context_tokens_after": prompt - 60,
                    "completion_tokens": 12, "latency_s": 0.3 + prompt as f64 / 2000.0,
                    "cost_usd": if k > 0 { original as f64 * 2e-8 } else { 0.0 }, "truncated": prompt < original
                });
                let _ = writeln!(lines, "{line}");
            }
            fs_err::write(vdir.join(format!("{dataset}.jsonl")), lines).unwrap();
        }
        if name != "rag-k100" {
            let report = score_dir(&vdir, &ScoreOptions::default()).unwrap();
            fs_err::write(vdir.join("result.json"), report.result_json()).unwrap();
        }
    }
    let failed = json!({"id": "qasper-9", "dataset": "qasper",
                        "error": "backend: the prompt of 9000 tokens exceeds the budget of 8192"});
    fs_err::create_dir_all(dir.join("truncate-end/failed")).unwrap();
    fs_err::write(dir.join("truncate-end/failed/qasper.jsonl"), format!("{failed}\n")).unwrap();
}

/// Decodes a PNG into `(width, height, RGB pixels)`.
pub(crate) fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(info.bit_depth == png::BitDepth::Eight && channels >= 3, "{info:?}");
    let pixels = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (info.width, info.height, pixels)
}
