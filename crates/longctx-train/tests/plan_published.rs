//! The memory planner against published peak-memory figures (each source cited in the
//! README's planner section): within ±20 % of every one.
//!
//! - torchtune README, "Memory and training speed" (PR #1664): Llama-3.1-8B on one RTX 4090,
//!   batch 2 packed to 2,048 tokens, compile on, activation checkpointing and chunked
//!   cross-entropy in all three configs: LoRA (r 8 on q, v) 16.2 GiB; full (bitsandbytes
//!   PagedAdamW8bit with the step fused into the backward pass: states off the allocator,
//!   gradients freed one by one) 18.9 GiB; QLoRA (r 8, all projections) 7.4 GiB.
//! - torchtune README, "Optimization flags" (PR #2003): Llama-3.2-3B full fine-tuning, batch 2,
//!   4,096 tokens, bf16, A100, peak active memory: baseline 25.5 GiB (unpacked Alpaca: short
//!   sequences, planned as 512 tokens), + packing, compile, chunked loss and activation
//!   checkpointing 24.9 GiB, + optimizer in backward, activation offloading and 8-bit AdamW
//!   17.6 GiB; LoRA (r 64 on q, v, o and the MLP, activation offloading) 8.5 GiB, QLoRA 4.6 GiB.
//! - Unsloth README / blog "Llama 3.3": Llama-3.1-8B QLoRA r 32 on all projections, batch 1,
//!   transformers + FlashAttention-2 (gradient checkpointing on, the whole-vocabulary loss)
//!   reaches 5,789 tokens on a 24 GB card and 28,454 on 80 GB.
//!
//! torchtune's figures are PyTorch's allocator peak (no CUDA context), so the planner's
//! `runtime` part is left out of them; Unsloth's are whole cards, so it stays in.

use std::path::PathBuf;

use longctx_train::plan::{self, BaseQuant, Checkpointing, Logits, Method, Offload, Optimizer, Spec, Trainer};

const GIB: f64 = (1u64 << 30) as f64;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/plan").join(name).display().to_string()
}

fn spec(model: &str, seq_len: usize, micro_batch: usize, method: Method) -> Spec {
    let shape = plan::model_shape(&fixture(model)).unwrap();
    Spec { micro_batch, method, checkpointing: Checkpointing::Layer, ..Spec::new(Trainer::Torchtune, shape, seq_len) }
}

fn lora(r: usize, targets: &[&str]) -> Method {
    Method::Lora { r, targets: targets.iter().map(ToString::to_string).collect(), dropout: false }
}

const ALL: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const QVO_MLP: [&str; 6] = ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// PyTorch's allocator peak: the plan less its runtime part.
fn allocated(s: &Spec) -> f64 {
    let p = plan::plan(s).unwrap();
    (p.peak_bytes - p.parts.iter().find(|p| p.name == "runtime").unwrap().bytes) / GIB
}

fn within(name: &str, ours: f64, published: f64, tolerance: f64) {
    let ratio = ours / published;
    eprintln!("{name}: planned {ours:.2}, published {published}, ratio {ratio:.3}");
    assert!((ratio - 1.0).abs() <= tolerance, "{name}: planned {ours:.2} vs published {published} ({ratio:.3})");
}

#[test]
fn torchtune_llama_31_8b_single_device() {
    let m = "llama-3.1-8b.json";
    within("8B LoRA", allocated(&spec(m, 2048, 2, lora(8, &["q_proj", "v_proj"]))), 16.2, 0.20);
    let full =
        Spec { optimizer: Optimizer::Adamw8bit, offload: vec![Offload::Optimizer], ..spec(m, 2048, 2, Method::Full) };
    within("8B full", allocated(&full), 18.9, 0.20);
    let qlora = Spec { base_quant: BaseQuant::Nf4, ..spec(m, 2048, 2, lora(8, &ALL)) };
    within("8B QLoRA", allocated(&qlora), 7.4, 0.20);
}

#[test]
fn torchtune_llama_32_3b_ladder() {
    let m = "llama-3.2-3b.json";
    let baseline = Spec { checkpointing: Checkpointing::None, logits: Logits::Full, ..spec(m, 512, 2, Method::Full) };
    within("3B baseline", allocated(&baseline), 25.5, 0.20);
    within("3B + activation checkpointing", allocated(&spec(m, 4096, 2, Method::Full)), 24.9, 0.20);
    let eight_bit =
        Spec { optimizer: Optimizer::Adamw8bit, offload: vec![Offload::Activations], ..spec(m, 4096, 2, Method::Full) };
    within("3B + 8-bit AdamW", allocated(&eight_bit), 17.6, 0.20);
    let lora_3b = Spec { offload: vec![Offload::Activations], ..spec(m, 4096, 2, lora(64, &QVO_MLP)) };
    within("3B LoRA", allocated(&lora_3b), 8.5, 0.20);
    within("3B QLoRA", allocated(&Spec { base_quant: BaseQuant::Nf4, ..lora_3b }), 4.6, 0.20);
}

#[test]
fn unsloth_hf_flash_attention_max_context() {
    for (gib, published) in [(24.0, 5789.0), (80.0, 28454.0)] {
        let s = Spec {
            trainer: Trainer::Hf,
            logits: Logits::Full,
            optimizer: Optimizer::Adamw8bit,
            base_quant: BaseQuant::Nf4,
            budget: gib * GIB,
            ..spec("llama-3.1-8b.json", 1024, 1, lora(32, &ALL))
        };
        within(&format!("Unsloth HF+FA2 at {gib} GB"), plan::plan(&s).unwrap().max_seq_len as f64, published, 0.20);
    }
}

#[test]
fn llama_31_8b_packed_to_its_window_on_one_h100_is_out_of_memory_and_a_fitting_setup_is_named() {
    let s = Spec {
        trainer: Trainer::Hf,
        checkpointing: Checkpointing::None,
        logits: Logits::Full,
        ..spec("llama-3.1-8b.json", 131_072, 1, Method::Full)
    };
    let p = plan::plan(&s).unwrap();
    assert!(!p.fits && p.over_by_bytes > 0.0);
    // The logits alone: the f32 upcast of 131,072 × 128,256 is 67 GB, four such copies.
    let logits = p.parts.iter().find(|p| p.name == "logits").unwrap().bytes;
    assert!(logits > 4.0 * 131_072.0 * 128_256.0 * 4.0);
    let fitting = p.suggestions.iter().find(|s| s.fits).expect("a configuration that fits");
    assert!(fitting.change.contains("--checkpointing layer"), "{}", fitting.change);
    assert!(fitting.max_seq_len >= 131_072);
}
