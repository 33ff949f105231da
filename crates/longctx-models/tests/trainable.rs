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
