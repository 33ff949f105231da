//! The memory planner against the peak RSS `longctx train` reached on the machine the records
//! were made on (`tests/fixtures/plan/measured_rss.json`, written by
//! `tools/bench/plan_vs_rss.py`): SmolLM2-135M and a tiny Llama at 1k–8k tokens, LoRA and full,
//! with and without checkpointing, each planned within ±15 %.

use std::path::PathBuf;

use longctx_train::plan::{self, Checkpointing, Method, Spec, Trainer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_recorded_run_is_planned_within_15_percent() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/plan/measured_rss.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    let threads = record["threads"].as_u64().unwrap() as usize;
    let rows = record["rows"].as_array().unwrap();
    assert!(rows.len() >= 32, "{} rows", rows.len());
    let mut worst = 0f64;
    for r in rows {
        let model = root().join(r["shape_from"].as_str().unwrap());
        let shape = plan::model_shape(model.to_str().unwrap()).unwrap();
        let n = r["seq_len"].as_u64().unwrap() as usize;
        let spec = Spec {
            method: if r["full"].as_bool().unwrap() {
                Method::Full
            } else {
                Spec::new(Trainer::Longctx, shape, n).method
            },
            checkpointing: if r["checkpointing"].as_bool().unwrap() {
                Checkpointing::Layer
            } else {
                Checkpointing::None
            },
            budget: 1e15,
            threads,
            ..Spec::new(Trainer::Longctx, shape, n)
        };
        let planned = plan::plan(&spec).unwrap().peak_bytes;
        let measured = r["measured_bytes"].as_f64().unwrap();
        let error = planned / measured - 1.0;
        eprintln!("{} {n} full={} ckpt={}: {error:+.3}", r["model"], r["full"], r["checkpointing"]);
        assert!(error.abs() <= 0.15, "{r}: planned {planned}, {error:+.3}");
        worst = worst.max(error.abs());
    }
    eprintln!("worst error {worst:.3}");
}
