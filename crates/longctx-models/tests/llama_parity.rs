//! The candle decoder against transformers 4.46.3 on tiny random-weight models (fixtures from
//! `tools/oracles/tiny_lm.py`): Llama, SmolLM2-style tied embeddings, every RoPE scaling
//! variant with max_position_embeddings 64 over 200 tokens, Mistral's sliding window and
//! Qwen2's q/k/v biases. Logits must agree to 1e-4 for one prefill, for a prefill split into
//! attention chunks, and for chunked prefill followed by token-by-token decoding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use longctx_models::llama::{CausalLm, Llama, LlamaHfConfig};
use longctx_models::rope::RopeScaling;

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny").join(name)
}

fn load(dir: &Path) -> Llama {
    load_with(dir, None)
}

/// Half precision runs the same code path (mask and softmax in f32) and stays close to f32.
#[test]
fn half_precision_runs_close_to_f32() {
    let dir = tiny("llama31");
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap();
    let cfg: LlamaHfConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    for dtype in [DType::BF16, DType::F16] {
        // SAFETY: the fixture file is not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], dtype, &Device::Cpu) }
            .unwrap();
        let mut model = Llama::new(cfg.clone().into_config(None).unwrap(), vb).unwrap();
        let logits = model.forward(&ids, 0).unwrap().squeeze(0).unwrap().to_dtype(DType::F32).unwrap();
        let d = max_abs_diff(&logits, &expected["single"]);
        assert!(d < 0.5, "{dtype:?}: max |Δ| {d}");
        eprintln!("{dtype:?}: max |Δ| {d}");
    }
}

fn load_with(dir: &Path, rope_override: Option<RopeScaling>) -> Llama {
    let cfg: LlamaHfConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(rope_override).unwrap();
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu) }
        .unwrap();
    Llama::new(cfg, vb).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(D::Minus1).unwrap().to_scalar::<f32>().unwrap()
}

fn check(name: &str) {
    let dir = tiny(name);
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap();
    let n = ids.dim(1).unwrap();
    let mut model = load(&dir);

    let single = model.forward(&ids, 0).unwrap().squeeze(0).unwrap();
    let d = max_abs_diff(&single, &expected["single"]);
    assert!(d <= 1e-4, "{name}: single prefill max |Δ| = {d}");

    model.reset();
    model.set_attention_chunk(16);
    let chunked_attention = model.forward(&ids, 0).unwrap().squeeze(0).unwrap();
    let d = max_abs_diff(&chunked_attention, &expected["single"]);
    assert!(d <= 1e-4, "{name}: prefill in attention chunks of 16, max |Δ| = {d}");

    model.reset();
    let mut parts = Vec::new();
    let mut passes = vec![(0, 64), (64, 150)];
    passes.extend((150..n).map(|i| (i, i + 1)));
    for (start, end) in passes {
        assert_eq!(model.cached_tokens(), start);
        parts.push(model.forward(&ids.narrow(1, start, end - start).unwrap(), start).unwrap().squeeze(0).unwrap());
    }
    let chunked = Tensor::cat(&parts, 0).unwrap();
    let d = max_abs_diff(&chunked, &expected["chunked"]);
    assert!(d <= 1e-4, "{name}: chunked prefill + decode max |Δ| = {d}");
    eprintln!("{name}: max |Δ| single {:.2e}, chunked {d:.2e}", max_abs_diff(&single, &expected["single"]));
}

/// The fixtures are sensitive: the wrong RoPE variant, or the dynamic NTK state not
/// recomputed per pass, moves the logits far beyond the tolerance.
#[test]
fn a_wrong_rotation_is_caught() {
    let dir = tiny("llama_dynamic2");
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap();
    let mut plain = load_with(&dir, Some(RopeScaling::None));
    let logits = plain.forward(&ids, 0).unwrap().squeeze(0).unwrap();
    assert!(max_abs_diff(&logits, &expected["single"]) > 0.1);
    // The chunked run's expectation differs from the single pass (keys keep old rotations).
    assert!(max_abs_diff(&expected["chunked"], &expected["single"]) > 0.1);
}

#[test]
fn llama() {
    check("llama");
}

#[test]
fn smollm2_tied_embeddings() {
    check("smollm2_tied");
}

#[test]
fn rope_linear() {
    check("llama_linear4");
}

#[test]
fn rope_dynamic_ntk_with_recomputation() {
    check("llama_dynamic2");
}

#[test]
fn rope_yarn() {
    check("llama_yarn4");
}

#[test]
fn rope_llama3() {
    check("llama31");
}

#[test]
fn mistral_sliding_window() {
    check("mistral_window32");
}

#[test]
fn qwen2_biases() {
    check("qwen2");
}
