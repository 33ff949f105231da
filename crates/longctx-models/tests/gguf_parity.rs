//! The GGUF loader. Tiny GGUF files written by `tools/oracles/gguf_fixtures.py` the way
//! llama.cpp's converter writes them (llama.cpp's names, permuted q/k rows for `llama`,
//! biases for qwen2, tied embeddings, linear RoPE metadata) must give the transformers logits
//! of the same tiny models to 1e-4 in F32, and close to them when quantized (Q8_0, Q4_0,
//! Q4_1: the quantized matmul kernels). The tokenizer comes from `tokenizer.json` beside the
//! file (the tiny files carry no tokenizer metadata).

use std::path::{Path, PathBuf};

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::Linear;
use longctx_models::gguf::{load_gguf, GgufFile, GgufWeights};
use longctx_models::llama::{CausalLm, Embed, Llama, Part, Proj, WeightSource};
use longctx_models::load::load_hf_dir;
use longctx_models::rope::RopeScaling;

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny").join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(D::Minus1).unwrap().to_scalar::<f32>().unwrap()
}

/// `‖a − b‖ / ‖b‖`.
fn relative_rms(a: &Tensor, b: &Tensor) -> f32 {
    let num = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let den = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    (num / den).sqrt()
}

/// Logits of one prefill over the fixture ids, and of chunked prefill + decode.
fn run(file: &str, name: &str) -> (Tensor, Tensor, std::collections::HashMap<String, Tensor>) {
    let dir = tiny(name);
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap();
    let n = ids.dim(1).unwrap();
    let mut loaded = load_gguf(&dir.join(file), &Device::Cpu, None).unwrap();
    let single = loaded.model.forward(&ids, 0).unwrap().squeeze(0).unwrap();
    loaded.model.reset();
    let mut parts = Vec::new();
    let mut passes = vec![(0, 64), (64, 150)];
    passes.extend((150..n).map(|i| (i, i + 1)));
    for (start, end) in passes {
        parts.push(
            loaded.model.forward(&ids.narrow(1, start, end - start).unwrap(), start).unwrap().squeeze(0).unwrap(),
        );
    }
    (single, Tensor::cat(&parts, 0).unwrap(), expected)
}

#[test]
fn f32_gguf_files_match_transformers() {
    for name in ["llama", "smollm2_tied", "llama_linear4", "qwen2"] {
        let (single, chunked, expected) = run("model-f32.gguf", name);
        let d1 = max_abs_diff(&single, &expected["single"]);
        let d2 = max_abs_diff(&chunked, &expected["chunked"]);
        eprintln!("{name}: GGUF f32 max |Δ| single {d1:.2e}, chunked {d2:.2e}");
        assert!(d1 <= 1e-4 && d2 <= 1e-4, "{name}: max |Δ| {d1} / {d2}");
    }
}

#[test]
fn gguf_metadata_gives_the_hf_configuration() {
    for name in ["llama", "smollm2_tied", "llama_linear4", "qwen2"] {
        let dir = tiny(name);
        let mut from_gguf = GgufFile::open(&dir.join("model-f32.gguf")).unwrap().config(None).unwrap();
        let hf = load_hf_dir(&dir, DType::F32, &Device::Cpu, None).unwrap();
        let mut from_hf = hf.model.config().clone();
        // The tiny GGUF files carry no tokenizer metadata, hence no EOS ids.
        from_hf.eos_token_ids.clear();
        // GGUF stores epsilon as an f32 (llama.cpp computes with that f32).
        assert_eq!(from_gguf.rms_norm_eps as f32, from_hf.rms_norm_eps as f32);
        from_gguf.rms_norm_eps = from_hf.rms_norm_eps;
        assert_eq!(from_gguf, from_hf, "{name}");
    }
    let linear = GgufFile::open(&tiny("llama_linear4").join("model-f32.gguf")).unwrap().config(None).unwrap();
    assert_eq!(linear.rope.scaling, RopeScaling::Linear { factor: 4.0 });
    // An override replaces the metadata's scaling.
    let over = GgufFile::open(&tiny("llama").join("model-f32.gguf")).unwrap().config(Some("dynamic:2")).unwrap();
    assert_eq!(over.rope.scaling, RopeScaling::DynamicNtk { factor: 2.0 });
}

/// The GGUF weights with every quantized matrix dequantized to a dense f32 one: the same
/// model without the quantized kernels (and without 8-bit activations).
struct Dequantized<'a>(GgufWeights<'a>);

fn dense(p: Proj) -> Proj {
    let cpu = Device::Cpu;
    match p {
        Proj::Packed(m, b) => {
            let (rows, cols) = (m.0.rows(), m.0.cols());
            Proj::Dense(Linear::new(Tensor::from_vec(m.0.dequantize(), (rows, cols), &cpu).unwrap(), b))
        }
        Proj::Quant(QMatMul::QTensor(t), b) => Proj::Dense(Linear::new(t.dequantize(&cpu).unwrap(), b)),
        other => other,
    }
}

impl WeightSource for Dequantized<'_> {
    fn proj(&self, layer: usize, part: Part, i: usize, o: usize, bias: bool) -> candle_core::Result<Proj> {
        self.0.proj(layer, part, i, o, bias).map(dense)
    }
    fn norm(&self, layer: usize, part: Part, size: usize) -> candle_core::Result<Tensor> {
        self.0.norm(layer, part, size)
    }
    fn final_norm(&self, size: usize) -> candle_core::Result<Tensor> {
        self.0.final_norm(size)
    }
    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embed> {
        self.0.embedding(vocab, hidden)
    }
    // The tied head comes from the (packed) embedding; untied ones are dequantized.
    fn lm_head(&self, hidden: usize, vocab: usize, tied: bool, embed: &Embed) -> candle_core::Result<Proj> {
        self.0.lm_head(hidden, vocab, tied, embed).map(dense)
    }
}

/// Quantized weights (Q8_0, Q4_0, Q4_1 through longctx's kernels, Q5_0 through candle's): the
/// logits stay close to those of the same weights dequantized to f32 — what is left is the
/// 8-bit rounding of the activations — and single and chunked runs agree.
#[test]
fn quantized_kernels_match_their_dequantized_weights() {
    for (file, bound) in
        [("model-q8_0.gguf", 0.06), ("model-q4_0.gguf", 0.06), ("model-q4_1.gguf", 0.06), ("model-q5_0.gguf", 0.06)]
    {
        let (single, chunked, expected) = run(file, "llama");
        let path = tiny("llama").join(file);
        let gguf = GgufFile::open(&path).unwrap();
        let config = gguf.config(None).unwrap();
        let weights = GgufWeights::new(&gguf, &config, &Device::Cpu).unwrap();
        let mut reference = Llama::from_source(config, &Dequantized(weights)).unwrap();
        let ids = expected["ids"].to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap();
        let want = reference.forward(&ids, 0).unwrap().squeeze(0).unwrap();
        let r = relative_rms(&single, &want);
        let vs_f32 = relative_rms(&single, &expected["single"]);
        let consistency = relative_rms(&chunked, &single);
        eprintln!("llama {file}: relative RMS vs dequantized {r:.4}, vs f32 model {vs_f32:.4}, chunked vs single {consistency:.2e}");
        assert!(r <= bound, "{file}: relative RMS error {r}");
        assert!(consistency <= 1e-3, "{file}: chunked vs single {consistency}");
    }
}

#[test]
fn a_file_that_is_not_gguf_is_refused_with_its_name() {
    let path = tiny("llama").join("config.json");
    let err = load_gguf(&path, &Device::Cpu, None).err().unwrap().to_string();
    assert!(err.contains("config.json") && err.contains("not a GGUF file"), "{err}");
}
