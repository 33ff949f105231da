//! Greedy generation against transformers' `generate(do_sample=False)` on the tiny models
//! (fixture from `tools/oracles/tiny_generate.py`): same tokens, same stop at end-of-sequence,
//! for prompts that run past max_position_embeddings while decoding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use longctx_models::generate::{generate, GenerationParams, StopReason};
use longctx_models::load::load_hf_dir;
use serde::Deserialize;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny")
}

#[derive(Deserialize)]
struct Run {
    prompt: Vec<u32>,
    generated: Vec<u32>,
}

#[test]
fn greedy_tokens_equal_transformers() {
    let fixture: std::collections::BTreeMap<String, Vec<Run>> =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("generate.json")).unwrap()).unwrap();
    assert_eq!(fixture.len(), 8);
    for (name, runs) in &fixture {
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        for run in runs {
            let params = GenerationParams { max_new_tokens: 40, ..Default::default() };
            let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &|ids| {
                loaded.tokenizer.inner().decode(ids, true).unwrap()
            })
            .unwrap();
            assert_eq!(g.tokens, run.generated, "{name}, prompt of {} tokens", run.prompt.len());
            let expected_reason = if run.generated.len() < 40 { StopReason::StopToken } else { StopReason::Length };
            assert_eq!(g.stop_reason, expected_reason, "{name}");
            assert_eq!(g.prompt_tokens, run.prompt.len());
        }
    }
}

#[test]
fn chunked_prefill_and_stop_strings() {
    let fixture: std::collections::BTreeMap<String, Vec<Run>> =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("generate.json")).unwrap()).unwrap();
    let run = &fixture["llama"][2];
    let mut loaded = load_hf_dir(&tiny().join("llama"), DType::F32, &Device::Cpu, None).unwrap();
    let decode = |ids: &[u32]| loaded.tokenizer.inner().decode(ids, true).unwrap();
    // The prompt in 7-token prefill chunks gives the same tokens (no dynamic RoPE here).
    let params = GenerationParams { max_new_tokens: 40, prefill_chunk: 7, ..Default::default() };
    let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &decode).unwrap();
    assert_eq!(g.tokens, run.generated);
    // A stop string taken from the greedy text cuts it there.
    let full = decode(&run.generated);
    let stop: String = full.chars().skip(10).take(3).collect();
    let params = GenerationParams { max_new_tokens: 40, stop_strings: vec![stop.clone()], ..Default::default() };
    let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &decode).unwrap();
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert_eq!(g.text, full[..full.find(&stop).unwrap()]);
}
