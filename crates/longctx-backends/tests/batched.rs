//! [`BatchedBackend`] (what an experiment's `batch` uses): requests sent together from
//! several threads are decoded in shared forward passes and get exactly the answers the
//! [`NativeBackend`] gives each alone; the worker ends when the backend is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use longctx_backends::batch::{BatchLimits, BatchedBackend};
use longctx_backends::native::{NativeBackend, NativeOptions};
use longctx_core::{Backend, ChatMessage, GenerationRequest, PromptInput};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prompts of different lengths (so some are prefilled while others decode), one raw text.
fn requests() -> Vec<GenerationRequest> {
    let questions = [
        "What is the capital of France?",
        "Name three colours of the rainbow and say which one has the longest wavelength, in one sentence.",
        "Summarise: the cat sat on the mat because the mat was warm and the sun shone through the window onto it all afternoon.",
        "2 + 2 =",
        "Write a haiku about long documents.",
    ];
    let mut out: Vec<GenerationRequest> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| GenerationRequest {
            prompt: PromptInput::Chat(vec![ChatMessage::new("user", *q)]),
            max_new_tokens: 6 + 3 * i,
            stop: if i == 1 { vec![".".into()] } else { Vec::new() },
            temperature: 0.0,
            seed: 0,
        })
        .collect();
    out.push(GenerationRequest {
        prompt: PromptInput::Text("Once upon a time, in a library full of very long books,".into()),
        max_new_tokens: 10,
        stop: Vec::new(),
        temperature: 0.0,
        seed: 0,
    });
    out
}

fn batched_equals_alone(model: &Path, options: &NativeOptions) {
    let native = Arc::new(NativeBackend::load(model, options).unwrap());
    let requests = requests();
    let alone: Vec<_> = requests.iter().map(|r| native.generate(r).unwrap()).collect();
    let limits = BatchLimits { max_batch: 4, ..BatchLimits::default() };
    let batched = BatchedBackend::new(Arc::clone(&native), limits).unwrap();
    assert_eq!(batched.parallelism(), 4);
    assert_eq!(batched.describe(), native.describe());
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = requests.iter().map(|r| s.spawn(|| batched.generate(r).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.text, b.text, "request {i}");
        assert_eq!(a.completion_tokens, b.completion_tokens, "request {i}");
        assert_eq!(a.prompt_tokens, b.prompt_tokens, "request {i}");
        assert_eq!(a.finish_reason, b.finish_reason, "request {i}");
    }
    assert!(together.iter().any(|c| c.completion_tokens > 1));
    // Dropping the backend stops its worker (the test would hang otherwise).
    drop(batched);
    assert_eq!(Arc::strong_count(&native), 1);
}

#[test]
fn smollm2_q4_batched_answers_equal_those_alone() {
    let model = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    batched_equals_alone(&model, &NativeOptions { prefill_chunk: 8, ..NativeOptions::default() });
}

#[test]
fn tiny_f32_batched_answers_equal_those_alone() {
    // Its config says 64 positions; plain RoPE reaches further.
    let options = NativeOptions { context_window: Some(256), prefill_chunk: 16, ..NativeOptions::default() };
    batched_equals_alone(&root().join("tests/fixtures/train/llama"), &options);
}
