//! Sliding-window perplexity against transformers (fixture from
//! `tools/oracles/tiny_perplexity.py`): per-token NLL of every tiny model for three
//! (context, stride) settings, to 1e-4, including windows longer than
//! max_position_embeddings (64) for every RoPE variant.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use longctx_core::Tokenizer;
use longctx_models::load::load_hf_dir;
use longctx_models::perplexity::perplexity;
use serde::Deserialize;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny")
}

#[derive(Deserialize)]
struct Fixture {
    n_tokens: usize,
    ids_head: Vec<u32>,
    settings: std::collections::BTreeMap<String, Vec<Setting>>,
}

#[derive(Deserialize)]
struct Setting {
    context: usize,
    stride: usize,
    per_token_nll: Vec<f32>,
}

#[test]
fn per_token_nll_matches_transformers() {
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("perplexity.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(tiny().join("text.txt")).unwrap();
    assert_eq!(fixture.settings.len(), 8);
    for (name, settings) in &fixture.settings {
        for s in settings {
            // A fresh model per setting, as the oracle does.
            let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
            let ids = loaded.tokenizer.encode(&text, false).unwrap();
            assert_eq!(ids.len(), fixture.n_tokens);
            assert_eq!(&ids[..16], fixture.ids_head.as_slice());
            let p = perplexity(&mut loaded.model, &ids, s.context, s.stride, &Device::Cpu, |_, _| {}).unwrap();
            assert_eq!(p.tokens, s.per_token_nll.len(), "{name} {}/{}", s.context, s.stride);
            let worst = p.per_token_nll.iter().zip(&s.per_token_nll).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-4, "{name} context {} stride {}: max |Δ| {worst}", s.context, s.stride);
            let mean = p.nll_sum / p.tokens as f64;
            assert!((p.ppl - mean.exp()).abs() < 1e-9);
        }
    }
}
