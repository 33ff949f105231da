//! The decoder's forward pass is differentiable (plain tensor ops, softmax and SiLU written
//! out): gradients through candle's autograd match finite differences on a tiny model.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use longctx_models::llama::{CausalLm, Llama, LlamaHfConfig};

fn loss(model: &mut Llama, ids: &Tensor) -> Tensor {
    model.reset();
    let n = ids.dim(1).unwrap();
    let logits = model.forward(&ids.narrow(1, 0, n - 1).unwrap(), 0).unwrap().squeeze(0).unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let targets = ids.narrow(1, 1, n - 1).unwrap().squeeze(0).unwrap().unsqueeze(1).unwrap();
    logp.gather(&targets, 1).unwrap().neg().unwrap().mean_all().unwrap()
}

#[test]
fn gradients_match_finite_differences() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/llama_dynamic2");
    let cfg: LlamaHfConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut model = Llama::new(cfg.into_config(None).unwrap(), vb).unwrap();
    varmap.load(dir.join("model.safetensors")).unwrap();
    // 80 tokens: past max_position_embeddings (64), so the dynamic RoPE path is included.
    let ids = Tensor::new((0..80u32).map(|i| (i * 37 + 11) % 96).collect::<Vec<_>>().as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let l = loss(&mut model, &ids);
    let at_base = l.to_scalar::<f32>().unwrap();
    // The fixture's weights, not the VarMap's initialisation, are in use.
    let mut reference = longctx_models::load::load_hf_dir(&dir, DType::F32, &Device::Cpu, None).unwrap().model;
    let expected = loss(&mut reference, &ids).to_scalar::<f32>().unwrap();
    assert!((at_base - expected).abs() < 1e-5, "{at_base} vs {expected}");
    let grads = l.backward().unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    let var: Var = varmap.data().lock().unwrap()[name].clone();
    let grad = grads.get(var.as_tensor()).expect("q_proj has a gradient");
    let g: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
    assert!(g.iter().all(|x| x.is_finite()) && g.iter().any(|x| x.abs() > 1e-6));
    // Directional derivative along the gradient, by central differences.
    let eps = 1e-2f64;
    let norm2: f64 = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let direction = (grad / norm2.sqrt()).unwrap();
    let base = var.as_tensor().copy().unwrap();
    let mut at = |t: f64| {
        var.set(&(&base + (&direction * t).unwrap()).unwrap()).unwrap();
        f64::from(loss(&mut model, &ids).to_scalar::<f32>().unwrap())
    };
    let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
    var.set(&base).unwrap();
    let analytic = norm2.sqrt();
    eprintln!("loss {at_base:.5}: directional derivative {numeric:.5} (finite difference) vs {analytic:.5} (autograd)");
    assert!((numeric - analytic).abs() <= 0.05 * analytic, "finite difference {numeric} vs autograd {analytic}");
}

/// QLoRA: LoRA updates trained over a frozen quantized base get, within 1e-5, the gradients
/// they get over the same weights dequantized into dense f32 matrices (the tiny Llama's
/// Q4_0 / Q4_1 / Q8_0 GGUF files, loaded packed with dequantized training products, against
/// the same files loaded dense); the loss agrees too.
#[test]
fn lora_gradients_over_a_quantized_base_equal_those_over_its_dequantized_weights() {
    use longctx_models::gguf::load_gguf_with;
    use longctx_models::llama::{Lora, Part};
    use longctx_models::qmatmul::Products;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/llama");
    let ids = Tensor::new((0..48u32).map(|i| (i * 29 + 5) % 96).collect::<Vec<_>>().as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut seed = 1u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    };
    // A and B both non-zero, so that both get gradients; the same values for both models.
    let r = 4;
    let mut inits = Vec::new();
    for layer in 0..2 {
        for part in [Part::Q, Part::V, Part::Down] {
            let (fin, fout) = match part {
                Part::Down => (64, 32),
                Part::V => (32, 16),
                _ => (32, 32),
            };
            inits.push((layer, part, random(r * fin), fin, random(fout * r), fout));
        }
    }
    for file in ["model-q4_0.gguf", "model-q4_1.gguf", "model-q8_0.gguf"] {
        let run = |dense: bool| -> (f32, Vec<Vec<f32>>) {
            let mut model = load_gguf_with(&dir.join(file), &Device::Cpu, None, dense).unwrap().model;
            model.set_quantized_products(Products::Dequantized).unwrap();
            let mut vars = Vec::new();
            for (layer, part, a, fin, b, fout) in &inits {
                let a = Var::from_tensor(&Tensor::from_vec(a.clone(), (r, *fin), &Device::Cpu).unwrap()).unwrap();
                let b = Var::from_tensor(&Tensor::from_vec(b.clone(), (*fout, r), &Device::Cpu).unwrap()).unwrap();
                let lora = Lora { a: a.as_tensor().clone(), b: b.as_tensor().clone(), scale: 2.0 };
                model.set_lora(*layer, *part, Some(lora)).unwrap();
                vars.push(a);
                vars.push(b);
            }
            let l = loss(&mut model, &ids);
            let grads = l.backward().unwrap();
            let g = vars
                .iter()
                .map(|v| grads.get(v.as_tensor()).expect("a gradient").flatten_all().unwrap().to_vec1().unwrap())
                .collect();
            (l.to_scalar::<f32>().unwrap(), g)
        };
        let (packed_loss, packed) = run(false);
        let (dense_loss, dense) = run(true);
        assert!((packed_loss - dense_loss).abs() <= 1e-5, "{file}: loss {packed_loss} vs {dense_loss}");
        let mut worst = 0f32;
        for (p, d) in packed.iter().zip(&dense) {
            assert!(d.iter().any(|x| x.abs() > 1e-6), "{file}: a zero gradient");
            for (x, y) in p.iter().zip(d) {
                worst = worst.max((x - y).abs() / y.abs().max(1.0));
            }
        }
        eprintln!("{file}: loss {packed_loss:.6}, largest gradient difference {worst:.2e}");
        assert!(worst <= 1e-5, "{file}: {worst}");
    }
}
