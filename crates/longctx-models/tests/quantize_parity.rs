//! Quantization at load (`longctx_models::quantize`) against gguf-py's reference quantizer:
//! the tiny Llama's safetensors weights quantized here give, byte for byte, the Q8_0 / Q4_0 /
//! Q4_1 tensors that `tools/oracles/gguf_fixtures.py` wrote with `gguf.quants.quantize`
//! (every 2-D tensor; q/k rows permuted as llama.cpp's converter does), and edge-case blocks
//! (zeros, ties, halves, one outlier, tiny and huge scales) give the bytes of
//! `tools/oracles/quantize_fixtures.py`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use longctx_models::gguf::GgufFile;
use longctx_models::llama::CausalLm;
use longctx_models::qmatmul::BlockKind;
use longctx_models::quantize::quantize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// llama.cpp's converter's q/k row order (`LlamaModel.permute`): within each head, the rows of
/// the two rotary halves interleaved.
fn permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..heads {
        for i in 0..half {
            for part in 0..2 {
                let r = h * 2 * half + part * half + i;
                out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
            }
        }
    }
    out
}

#[test]
fn tiny_llama_weights_quantize_to_gguf_py_bytes() {
    let dir = root().join("tests/fixtures/tiny/llama");
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let names = [
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    let mut pairs: Vec<(String, String, usize)> = vec![
        ("model.embed_tokens.weight".into(), "token_embd.weight".into(), 0),
        ("lm_head.weight".into(), "output.weight".into(), 0),
    ];
    for layer in 0..2 {
        for (hf, short) in names {
            let heads = match short {
                "attn_q" => 4,
                "attn_k" => 2,
                _ => 0,
            };
            pairs.push((format!("model.layers.{layer}.{hf}.weight"), format!("blk.{layer}.{short}.weight"), heads));
        }
    }
    for (kind, file) in [
        (BlockKind::Q8_0, "model-q8_0.gguf"),
        (BlockKind::Q4_0, "model-q4_0.gguf"),
        (BlockKind::Q4_1, "model-q4_1.gguf"),
    ] {
        let gguf = GgufFile::open(&dir.join(file)).unwrap();
        let mut blocks = 0;
        for (hf, name, heads) in &pairs {
            let t: &Tensor = &weights[hf.as_str()];
            let (rows, cols) = t.dims2().unwrap();
            let mut w = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if *heads > 0 {
                w = permute(&w, rows, cols, *heads);
            }
            let want = gguf.tensor(name, &Device::Cpu).unwrap();
            let want = want.data().unwrap();
            let got = quantize(kind, &w);
            assert_eq!(got.len(), want.len(), "{file} {name}");
            let bb = got.len() / (rows * cols / 32);
            for (b, (g, e)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
                assert_eq!(g, e, "{file} {name} block {b}: values {:?}", &w[b * 32..(b + 1) * 32]);
            }
            blocks += rows * cols / 32;
        }
        assert!(blocks > 700, "{file}: {blocks} blocks compared");
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn edge_case_blocks_quantize_to_gguf_py_bytes() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/oracles/quantize.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let blocks = fixture["blocks"].as_array().unwrap();
    assert!(blocks.len() >= 30);
    for (i, block) in blocks.iter().enumerate() {
        let values: Vec<f32> = block["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        for (kind, key) in [(BlockKind::Q8_0, "q8_0"), (BlockKind::Q4_0, "q4_0"), (BlockKind::Q4_1, "q4_1")] {
            assert_eq!(hex(&quantize(kind, &values)), block[key].as_str().unwrap(), "block {i} {key}: {values:?}");
        }
    }
}

/// `‖a − b‖ / ‖b‖`.
fn relative_rms(a: &Tensor, b: &Tensor) -> f32 {
    let num = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let den = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    (num / den).sqrt()
}

/// The tiny Llama quantized at load runs on the Q4/Q8 kernels: its logits stay near the f32
/// ones, Q8_0 nearer than the 4-bit formats, and the GGUF files of the same weights (the same
/// blocks, plus a quantized embedding) give nearly the same logits. Measured (relative RMS
/// of the logits over the fixture's 200 tokens; 8-bit activations included): Q8_0 0.043 vs
/// f32, 0.030 vs its GGUF twin; Q4_0 0.448 / 0.340; Q4_1 0.412 / 0.319 (random weights in 32
/// columns lose much to 4 bits).
#[test]
fn a_model_quantized_at_load_stays_near_f32_and_near_its_gguf_twin() {
    use longctx_models::load::load_hf_dir;
    let dir = root().join("tests/fixtures/tiny/llama");
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(candle_core::DType::U32).unwrap().unsqueeze(0).unwrap();
    let logits = |kind: Option<BlockKind>| {
        let mut loaded = load_hf_dir(&dir, candle_core::DType::F32, &Device::Cpu, None).unwrap();
        if let Some(kind) = kind {
            loaded.model.quantize_weights(kind).unwrap();
        }
        loaded.model.forward(&ids, 0).unwrap().squeeze(0).unwrap()
    };
    let f32_logits = logits(None);
    assert!(relative_rms(&f32_logits, &expected["single"]) < 1e-5);
    let mut errors = Vec::new();
    for (kind, file, bound) in [
        (BlockKind::Q8_0, "model-q8_0.gguf", 0.06),
        (BlockKind::Q4_0, "model-q4_0.gguf", 0.6),
        (BlockKind::Q4_1, "model-q4_1.gguf", 0.6),
    ] {
        let q = logits(Some(kind));
        let e = relative_rms(&q, &f32_logits);
        let gguf = longctx_models::gguf::load_gguf(&dir.join(file), &Device::Cpu, None).unwrap();
        let mut gguf = gguf.model;
        let twin = relative_rms(&q, &gguf.forward(&ids, 0).unwrap().squeeze(0).unwrap());
        eprintln!("{kind:?}: relative RMS vs f32 {e:.4}, vs the GGUF file {twin:.4}");
        assert!(e > 0.0 && e < bound, "{kind:?}: {e}");
        assert!(twin < bound, "{kind:?} vs {file}: {twin}");
        errors.push(e);
    }
    assert!(errors[0] < errors[1] && errors[0] < errors[2], "{errors:?}");
}

/// NF4 at load (bitsandbytes' codes, double-quantized scales; projections only) computes what
/// the same model computes with each projection replaced by its NF4-dequantized weights, and
/// errs like the other 4-bit formats on the tiny Llama's random weights (relative RMS of the
/// logits vs f32: 0.47; Q4_0 0.45, Q4_1 0.41 with 8-bit activations).
#[test]
fn nf4_at_load_equals_the_dequantized_weights_and_stays_near_f32() {
    use longctx_models::llama::WeightFormat;
    use longctx_models::load::load_hf_dir;
    let dir = root().join("tests/fixtures/tiny/llama");
    let expected = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["ids"].to_dtype(candle_core::DType::U32).unwrap().unsqueeze(0).unwrap();
    let forward = |dir: &std::path::Path, nf4: bool| {
        let mut loaded = load_hf_dir(dir, candle_core::DType::F32, &Device::Cpu, None).unwrap();
        if nf4 {
            loaded.model.quantize_weights(WeightFormat::Nf4).unwrap();
        }
        loaded.model.forward(&ids, 0).unwrap().squeeze(0).unwrap()
    };
    // The same model with every projection replaced by its NF4 round trip.
    let twin = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        if dir.join(file).exists() {
            std::fs::copy(dir.join(file), twin.path().join(file)).unwrap();
        }
    }
    let mut weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut replaced = 0;
    for (name, t) in &mut weights {
        if name.ends_with("_proj.weight") {
            let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let round_trip = longctx_models::nf4::quantize_double(&values, 64).unwrap().dequantize();
            *t = Tensor::from_vec(round_trip, t.shape(), &Device::Cpu).unwrap();
            replaced += 1;
        }
    }
    assert_eq!(replaced, 14);
    candle_core::safetensors::save(&weights, twin.path().join("model.safetensors")).unwrap();
    let nf4 = forward(&dir, true);
    let dequantized = forward(twin.path(), false);
    let same = relative_rms(&nf4, &dequantized);
    let e = relative_rms(&nf4, &forward(&dir, false));
    eprintln!("NF4: relative RMS vs its dequantized twin {same:.2e}, vs f32 {e:.4}");
    assert!(same < 1e-5, "{same}");
    assert!(e > 0.0 && e < 0.6, "{e}");
}
