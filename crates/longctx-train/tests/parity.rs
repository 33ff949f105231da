//! Training against torch 2.5.1 + transformers 4.46.3 + peft 0.13.2 (fixtures of
//! `tools/oracles/train_fixtures.py`, tiny random Llama and Qwen2 models with byte-level
//! tokenizers, Llama 3 and ChatML templates): rendering and assistant masks, both losses under
//! every batching, LoRA gradients, ten AdamW steps of LoRA and of full fine-tuning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use longctx_models::llama::{CausalLm, Llama, LlamaHfConfig, Lora};
use longctx_models::load::{load_hf_dir, load_tokenizer};
use longctx_models::lora::{tensor_names, Adapter};
use longctx_train::batch::{micro_batches, Batching};
use longctx_train::data::{prepare, read_jsonl, Encoded, Overlong};
use longctx_train::loss::LossKind;
use longctx_train::optim::{clip_grad_norm, AdamW, AdamWConfig, Schedule};
use longctx_train::step::{forward_backward, target_nll, Grads, Packed, StepOptions};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Every conversation of chats.jsonl encoded with the model's tokenizer and template.
fn encoded(model: &str, max_seq_len: usize, overlong: Overlong) -> Vec<Encoded> {
    let (tok, template) = load_tokenizer(&dir().join(model)).unwrap();
    let path = dir().join("chats.jsonl");
    let conversations = read_jsonl(&path).unwrap();
    prepare(&path, &conversations, &tok, &template.unwrap(), max_seq_len, overlong).unwrap().0
}

fn model(name: &str) -> Llama {
    load_hf_dir(&dir().join(name), DType::F32, &Device::Cpu, None).unwrap().model
}

/// `Σ w · ℓ` over the whole file as one step, the sequences split into micro-batches by
/// `batching`.
fn file_loss(model: &Llama, seqs: &[Encoded], kind: LossKind, batching: Batching, capacity: usize) -> f64 {
    let n: Vec<usize> = seqs.iter().map(Encoded::n_targets).collect();
    let w = kind.weights(&n);
    let lens: Vec<usize> = seqs.iter().map(Encoded::len).collect();
    let mut total = 0.0;
    for mb in micro_batches(&lens, batching, capacity, 3, 0) {
        let refs: Vec<&Encoded> = mb.iter().map(|&i| &seqs[i]).collect();
        let weights: Vec<f64> = mb.iter().map(|&i| w[i]).collect();
        let packed = Packed::new(&refs, &weights, &Device::Cpu).unwrap();
        let nll = target_nll(model, &packed, 7).unwrap();
        total += nll.iter().zip(&packed.target_sequence).map(|(&l, &s)| f64::from(l) * weights[s]).sum::<f64>();
    }
    total
}

#[test]
fn rendering_and_assistant_masks_equal_the_reference() {
    for (model, tok) in [("llama", "llama3"), ("qwen2", "chatml")] {
        let reference = json(&format!("rendered_{tok}.json"));
        let samples = reference["samples"].as_array().unwrap();
        let seqs = encoded(model, usize::MAX, Overlong::Drop);
        assert_eq!(seqs.len(), samples.len());
        assert!(samples.len() >= 20);
        for (i, (s, r)) in seqs.iter().zip(samples).enumerate() {
            let ids: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
            let mask: Vec<u8> = serde_json::from_value(r["mask"].clone()).unwrap();
            assert_eq!(s.ids, ids, "{tok} sample {i}");
            assert_eq!(s.targets.iter().map(|&t| u8::from(t)).collect::<Vec<_>>(), mask, "{tok} sample {i}");
            assert_eq!(s.n_targets() as u64, r["n_targets"].as_u64().unwrap());
        }
    }
}

#[test]
fn both_losses_equal_the_reference_under_every_batching() {
    let reference = json("losses.json");
    for name in ["llama", "qwen2"] {
        let m = model(name);
        let r = &reference["models"][name];
        let seqs = encoded(name, usize::MAX, Overlong::Drop);
        // Per-token NLL, each sequence alone and all packed into one row.
        let all: Vec<&Encoded> = seqs.iter().collect();
        let packed = Packed::new(&all, &vec![1.0; all.len()], &Device::Cpu).unwrap();
        let nll = target_nll(&m, &packed, 1024).unwrap();
        let want: Vec<f64> = r["samples"].as_array().unwrap().iter().flat_map(|s| floats(&s["nll"])).collect();
        assert_eq!(nll.len(), want.len());
        let worst = nll.iter().zip(&want).map(|(&a, b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 2e-5, "{name}: packed per-token NLL off by {worst}");
        for (kind, key) in [(LossKind::TokenMean, "token_mean"), (LossKind::LongAlign, "longalign")] {
            let expected = r[key].as_f64().unwrap();
            for (batching, capacity) in
                [(Batching::Naive, 1), (Batching::Sorted, 160), (Batching::Packed, 300), (Batching::Packed, 100_000)]
            {
                let got = file_loss(&m, &seqs, kind, batching, capacity);
                assert!((got - expected).abs() < 1e-5, "{name} {key} {batching:?}/{capacity}: {got} vs {expected}");
            }
        }
        // max_seq_len 48: over-long sequences dropped, or cut.
        let r48 = &r["max_seq_len_48"];
        for (overlong, key) in [(Overlong::Drop, "drop"), (Overlong::Truncate, "truncate")] {
            let seqs = encoded(name, 48, overlong);
            assert_eq!(seqs.len(), r48[key]["samples"].as_array().unwrap().len(), "{name} {key}");
            let lines: Vec<usize> = seqs.iter().map(|s| s.line - 1).collect();
            assert_eq!(serde_json::to_value(&lines).unwrap(), r48[key]["samples"], "{name} {key}");
            for (kind, lk) in [(LossKind::TokenMean, "token_mean"), (LossKind::LongAlign, "longalign")] {
                let got = file_loss(&m, &seqs, kind, Batching::Packed, 100);
                let expected = r48[key][lk].as_f64().unwrap();
                assert!((got - expected).abs() < 1e-5, "{name} 48/{key} {lk}: {got} vs {expected}");
            }
        }
    }
}

/// The fixture model with the fixture adapter's A and B as trainable variables.
fn with_trainable_adapter(name: &str, adapter: &str) -> (Llama, Vec<(String, Var)>) {
    let mut m = model(name);
    let a = Adapter::load(&dir().join(adapter), m.config(), &Device::Cpu).unwrap();
    let mut vars = Vec::new();
    for (&(layer, part), lora) in &a.loras {
        let va = Var::from_tensor(&lora.a).unwrap();
        let vb = Var::from_tensor(&lora.b).unwrap();
        let (na, nb) = tensor_names(layer, part);
        m.set_lora(layer, part, Some(Lora { a: va.as_tensor().clone(), b: vb.as_tensor().clone(), scale: lora.scale }))
            .unwrap();
        vars.push((na, va));
        vars.push((nb, vb));
    }
    (m, vars)
}

/// Forward and backward of one step over `samples` (one micro-batch each, or all packed).
fn step_grads(
    m: &Llama,
    seqs: &[Encoded],
    samples: &[usize],
    kind: LossKind,
    vars: &[Var],
    options: &StepOptions,
    packed: bool,
) -> (f64, Grads) {
    let n: Vec<usize> = samples.iter().map(|&i| seqs[i].n_targets()).collect();
    let w = kind.weights(&n);
    let mut grads = Grads::default();
    let mut loss = 0.0;
    let groups: Vec<Vec<usize>> =
        if packed { vec![(0..samples.len()).collect()] } else { (0..samples.len()).map(|j| vec![j]).collect() };
    for g in groups {
        let refs: Vec<&Encoded> = g.iter().map(|&j| &seqs[samples[j]]).collect();
        let weights: Vec<f64> = g.iter().map(|&j| w[j]).collect();
        let p = Packed::new(&refs, &weights, &Device::Cpu).unwrap();
        loss += forward_backward(m, &p, vars, options, &mut grads).unwrap();
    }
    (loss, grads)
}

fn assert_close(got: &Tensor, want: &[f64], rel: f64, what: &str) {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f64, |a, b| a.max(b.abs())).max(1e-6);
    let worst = got.iter().zip(want).map(|(&a, b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
    assert!(worst <= rel * scale, "{what}: max |Δ| {worst} against max |x| {scale}");
}

#[test]
fn lora_gradients_equal_peft_with_and_without_checkpointing_and_packing() {
    let reference = json("lora.json");
    for (name, adapter) in [("llama", "adapter_llama"), ("qwen2", "adapter_qwen2_rslora")] {
        let (m, named) = with_trainable_adapter(name, adapter);
        let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
        let seqs = encoded(name, usize::MAX, Overlong::Drop);
        for (kind, key) in [(LossKind::TokenMean, "token_mean"), (LossKind::LongAlign, "longalign")] {
            let r = &reference["adapters"][adapter]["gradients"][key];
            for (checkpointing, packed) in [(false, false), (true, false), (false, true), (true, true)] {
                let options = StepOptions { checkpointing, head_chunk: 5, dropout: None };
                let (loss, grads) = step_grads(&m, &seqs, &[0, 1, 2, 3], kind, &vars, &options, packed);
                let expected = r["loss"].as_f64().unwrap();
                assert!((loss - expected).abs() < 1e-5, "{adapter} {key}: loss {loss} vs {expected}");
                for (n, v) in &named {
                    let g = grads.get(v).unwrap_or_else(|| panic!("{n}: no gradient"));
                    let what = format!("{adapter} {key} ckpt={checkpointing} packed={packed} {n}");
                    assert_close(g, &floats(&r["grads"][n]), 1e-4, &what);
                }
            }
        }
    }
}

/// Ten steps as the fixture's: samples 4k..4k+3 per step, clip 1.0, AdamW, cosine with warm-up.
fn ten_steps(m: &Llama, named: &[(String, Var)], seqs: &[Encoded], kind: LossKind, steps: &Value) {
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let refs: Vec<&Var> = vars.iter().collect();
    let config = AdamWConfig { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01 };
    let mut opt = AdamW::new(named.to_vec(), config).unwrap();
    for (k, r) in steps.as_array().unwrap().iter().enumerate() {
        let samples: Vec<usize> = (0..4).map(|j| (4 * k + j) % 24).collect();
        let (loss, mut grads) = step_grads(m, seqs, &samples, kind, &vars, &StepOptions::default(), true);
        let norm = clip_grad_norm(&mut grads, &refs, Some(1.0)).unwrap();
        let lr = Schedule::Cosine.lr(1e-3, k, 3, 10);
        assert!((loss - r["loss"].as_f64().unwrap()).abs() < 1e-4, "step {k}: loss {loss} vs {}", r["loss"]);
        assert!((lr - r["lr"].as_f64().unwrap()).abs() < 1e-12, "step {k}: lr");
        let want_norm = r["grad_norm"].as_f64().unwrap();
        assert!((norm - want_norm).abs() < 1e-4 * want_norm.max(1.0), "step {k}: grad norm {norm} vs {want_norm}");
        opt.step(&grads, lr).unwrap();
    }
}

#[test]
fn ten_adamw_steps_of_lora_equal_torch() {
    let reference = json("lora.json");
    for (name, adapter) in [("llama", "adapter_llama"), ("qwen2", "adapter_qwen2_rslora")] {
        let (m, named) = with_trainable_adapter(name, adapter);
        let seqs = encoded(name, usize::MAX, Overlong::Drop);
        let train = &reference["adapters"][adapter]["train"];
        assert_eq!(train["loss"], "longalign");
        ten_steps(&m, &named, &seqs, LossKind::LongAlign, &train["steps"]);
        for (n, v) in &named {
            assert_close(v.as_tensor(), &floats(&train["after"][n]), 1e-4, &format!("{adapter} {n} after 10 steps"));
        }
    }
}

#[test]
fn ten_adamw_steps_of_full_fine_tuning_equal_torch() {
    let reference = json("lora.json");
    let d = dir().join("llama");
    let cfg: LlamaHfConfig = serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let m = Llama::new(cfg.into_config(None).unwrap(), vb).unwrap();
    varmap.load(d.join("model.safetensors")).unwrap();
    let mut named: Vec<(String, Var)> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let seqs = encoded("llama", usize::MAX, Overlong::Drop);
    let full = &reference["full_finetune"];
    ten_steps(&m, &named, &seqs, LossKind::TokenMean, &full["steps"]);
    let after: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir().join("full_after_10.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(after.len(), named.len());
    for (n, v) in &named {
        let want: Vec<f64> =
            after[n].flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f64::from).collect();
        assert_close(v.as_tensor(), &want, 1e-4, &format!("full {n}"));
    }
}

#[test]
fn lora_over_bf16_weights_trains_close_to_the_f32_reference() {
    let reference = json("lora.json");
    let mut m = load_hf_dir(&dir().join("llama"), DType::BF16, &Device::Cpu, None).unwrap().model;
    let a = Adapter::load(&dir().join("adapter_llama"), m.config(), &Device::Cpu).unwrap();
    let mut named = Vec::new();
    for (&(layer, part), lora) in &a.loras {
        let (va, vb) = (Var::from_tensor(&lora.a).unwrap(), Var::from_tensor(&lora.b).unwrap());
        m.set_lora(layer, part, Some(Lora { a: va.as_tensor().clone(), b: vb.as_tensor().clone(), scale: lora.scale }))
            .unwrap();
        let (na, nb) = tensor_names(layer, part);
        named.push((na, va));
        named.push((nb, vb));
    }
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let seqs = encoded("llama", usize::MAX, Overlong::Drop);
    let r = &reference["adapters"]["adapter_llama"]["gradients"]["token_mean"];
    let (loss, grads) = step_grads(&m, &seqs, &[0, 1, 2, 3], LossKind::TokenMean, &vars, &StepOptions::default(), true);
    let expected = r["loss"].as_f64().unwrap();
    assert!((loss - expected).abs() < 0.05, "bf16 loss {loss} vs f32 {expected}");
    for (n, v) in &named {
        // bf16 keeps 8 bits of mantissa (and this tiny model's weights are large): the adapter's
        // gradients agree to within a fifth of their largest value, not to f32's 1e-4.
        assert_close(grads.get(v).unwrap(), &floats(&r["grads"][n]), 0.2, &format!("bf16 {n}"));
        assert_eq!(grads.get(v).unwrap().dtype(), DType::F32, "the adapter trains in f32");
    }
}

/// QLoRA through `load_trainable`: `[lora] base_quant = "q8_0"` quantizes the frozen base at
/// load; the file's loss over it stays near the f32 base's (8-bit weights, f32 products), a
/// GGUF-only setting on a safetensors model is refused by name.
#[test]
fn a_quantized_base_trains_near_the_f32_one() {
    use longctx_train::config::TrainConfig;
    use longctx_train::trainer::load_trainable;
    let seqs = encoded("llama", 64, Overlong::Truncate);
    let config = |extra: &str| {
        let path = dir().join("llama");
        TrainConfig::parse(&format!(
            "name = \"q\"\n[model]\npath = \"{}\"\n[data]\npath = \"d.jsonl\"\nmax_seq_len = 64\n[lora]\nr = 4\n{extra}",
            path.display()
        ))
        .unwrap()
    };
    let loss_of = |extra: &str| {
        let t = load_trainable(&config(extra), &Device::Cpu).unwrap();
        file_loss(&t.model, &seqs, LossKind::LongAlign, Batching::Packed, 64)
    };
    let (f32_loss, q8_loss) = (loss_of(""), loss_of("base_quant = \"q8_0\"\n"));
    let q4_loss = loss_of("base_quant = \"q4_0\"\n");
    let nf4_loss = loss_of("base_quant = \"nf4\"\n");
    eprintln!("loss over the f32 base {f32_loss:.5}, Q8_0 {q8_loss:.5}, Q4_0 {q4_loss:.5}, NF4 {nf4_loss:.5}");
    assert!(q8_loss != f32_loss && (q8_loss - f32_loss).abs() < 0.01 * f32_loss.abs());
    assert!((q4_loss - f32_loss).abs() > (q8_loss - f32_loss).abs());
    assert!((nf4_loss - f32_loss).abs() > (q8_loss - f32_loss).abs() && (nf4_loss - f32_loss).abs() < 0.05 * f32_loss);
    let e = load_trainable(&config("base_quant = \"gguf\"\n"), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("no GGUF file"), "{e}");
}
