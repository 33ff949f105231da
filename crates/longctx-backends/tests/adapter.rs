//! The native backend with a LoRA adapter (`NativeOptions::adapter`, what `longctx serve
//! --adapter` and an experiment's `adapter` use): the adapter changes what the model says, its
//! name shows in the backend's description, and an adapter of other shapes is refused.

use std::path::{Path, PathBuf};

use longctx_backends::native::{NativeBackend, NativeOptions};
use longctx_core::{Backend, ChatMessage, GenerationRequest, PromptInput};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train")
}

fn answer(backend: &NativeBackend) -> String {
    let request = GenerationRequest {
        prompt: PromptInput::Chat(vec![ChatMessage::new("user", "What is the capital of France?")]),
        max_new_tokens: 12,
        stop: Vec::new(),
        temperature: 0.0,
        seed: 0,
    };
    backend.generate(&request).unwrap().text
}

#[test]
fn an_adapter_changes_the_generations_and_is_named() {
    let model = fixtures().join("llama");
    let base = NativeBackend::load(&model, &NativeOptions::default()).unwrap();
    let options = NativeOptions { adapter: Some(fixtures().join("adapter_llama")), ..NativeOptions::default() };
    let adapted = NativeBackend::load(&model, &options).unwrap();
    assert_eq!(base.describe(), "native:llama");
    assert_eq!(adapted.describe(), "native:llama+adapter_llama");
    assert_ne!(answer(&base), answer(&adapted));
    // Deterministic: the same adapter gives the same greedy answer.
    assert_eq!(answer(&adapted), answer(&NativeBackend::load(&model, &options).unwrap()));
}

#[test]
fn an_adapter_for_another_model_is_refused_by_tensor() {
    let dir = tempfile::tempdir().unwrap();
    // The llama adapter's tensors, declared for rank 8: every shape is wrong.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("adapter_llama/adapter_config.json")).unwrap())
            .unwrap();
    config["r"] = 8.into();
    std::fs::write(dir.path().join("adapter_config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixtures().join("adapter_llama/adapter_model.safetensors"),
        dir.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let options = NativeOptions { adapter: Some(dir.path().to_path_buf()), ..NativeOptions::default() };
    let err = NativeBackend::load(&fixtures().join("llama"), &options).err().unwrap().to_string();
    assert!(err.contains("lora_A.weight` has shape [4, 32]; this model needs [8, 32] (rank 8)"), "{err}");
}

/// `quantize`: the projections quantized at load, the adapter applied over them (QLoRA at
/// inference); a GGUF file or a non-f32 dtype is refused before anything loads.
#[test]
fn an_adapter_applies_over_weights_quantized_at_load() {
    use longctx_backends::native::Quantize;
    let model = fixtures().join("llama");
    let adapter = Some(fixtures().join("adapter_llama"));
    let q8 = NativeOptions { quantize: Some(Quantize::Q8_0), adapter: adapter.clone(), ..NativeOptions::default() };
    let quantized = NativeBackend::load(&model, &q8).unwrap();
    let plain = NativeBackend::load(&model, &NativeOptions { adapter, ..NativeOptions::default() }).unwrap();
    // Both answer; the 8-bit weights change the logits, not (here) the description.
    assert_eq!(quantized.describe(), plain.describe());
    assert!(!answer(&quantized).is_empty());
    let gguf = root_dir().join("tests/fixtures/tiny/llama/model-q8_0.gguf");
    let e = NativeBackend::load(&gguf, &q8).unwrap_err().to_string();
    assert!(e.contains("quantized already"), "{e}");
    let bf16 = NativeOptions { dtype: candle_core::DType::BF16, ..q8 };
    let e = NativeBackend::load(&model, &bf16).unwrap_err().to_string();
    assert!(e.contains("f32 weights"), "{e}");
}

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
