//! The cross-encoder reranker against sentence-transformers' CrossEncoder on a tiny
//! random-weight BERT sequence classifier (fixtures by tools/oracles/cross_encoder.py): pair
//! encoding with longest-first truncation to 512 tokens, and the logits.

use std::path::Path;

use longctx_context::rerank::CrossEncoder;
use longctx_core::Reranker;
use serde_json::Value;

#[test]
fn logits_equal_sentence_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let model = CrossEncoder::load(&dir.join("cross_encoder_tiny")).unwrap();
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cross_encoder.json")).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let mut truncated = 0;
    let mut worst = 0f32;
    for c in cases {
        let (q, p) = (c["query"].as_str().unwrap(), c["passage"].as_str().unwrap());
        let enc = model.encode_pair(q, p).unwrap();
        let ids: Vec<u32> = serde_json::from_value(c["input_ids"].clone()).unwrap();
        let types: Vec<u32> = serde_json::from_value(c["token_type_ids"].clone()).unwrap();
        assert_eq!(enc.ids, ids, "{}", c["name"]);
        assert_eq!(enc.type_ids, types, "{}", c["name"]);
        truncated += usize::from(c["n_tokens_untruncated"].as_u64().unwrap() > 512);
        let got = model.logits(q, &[p]).unwrap()[0];
        let want = c["logit"].as_f64().unwrap() as f32;
        worst = worst.max((got - want).abs());
    }
    eprintln!("{} pairs ({truncated} truncated): max |Δ logit| = {worst:.2e}", cases.len());
    assert!(truncated >= 3);
    assert!(worst < 2e-5, "max |Δ logit| {worst}");
    // As a reranker: one query against several passages, in one batch.
    let q = cases[0]["query"].as_str().unwrap();
    let passages: Vec<&str> = cases.iter().map(|c| c["passage"].as_str().unwrap()).collect();
    let scores = model.rerank(q, &passages).unwrap().scores;
    let one_by_one: Vec<f32> = passages.iter().map(|p| model.logits(q, &[p]).unwrap()[0]).collect();
    for (a, b) in scores.iter().zip(&one_by_one) {
        assert!((a - b).abs() < 1e-5);
    }
}
