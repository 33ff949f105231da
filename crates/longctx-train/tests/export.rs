//! `longctx train --export`: the files written for each engine equal the committed job that the
//! engine itself ran (tools/oracles/export_fixtures.py), the engine's first step had longctx's
//! loss of the same data, and the adapter the engine saved loads back with its logits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use longctx_models::llama::CausalLm;
use longctx_models::load::{load_hf_dir, load_tokenizer};
use longctx_models::lora::Adapter;
use longctx_train::config::TrainConfig;
use longctx_train::export::{export, Engine};
use longctx_train::loss::LossKind;
use longctx_train::trainer::load_data;
use serde_json::Value;

/// The engines whose jobs tools/oracles/export_fixtures.py ran.
const ENGINES: &[Engine] = &[Engine::Trl, Engine::Torchtune, Engine::Axolotl];

fn root() -> PathBuf {
    fs_err::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap()
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/export")
}

/// The job file of `engine` (tests/fixtures/export/job.toml; torchtune's has the tiny Llama
/// without RoPE scaling) with its paths made absolute, and its text.
fn job_of(engine: Engine) -> (TrainConfig, String) {
    let file = if engine == Engine::Torchtune { "job-torchtune.toml" } else { "job.toml" };
    let text = fs_err::read_to_string(fixtures().join(file)).unwrap();
    let mut config = TrainConfig::parse(&text).unwrap();
    config.model.path = root().join(&config.model.path).display().to_string();
    config.data.path = Some(root().join(config.data.path.as_ref().unwrap()));
    (config, text)
}

fn job() -> (TrainConfig, String) {
    job_of(Engine::Trl)
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, fs_err::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

fn run_record(engine: Engine) -> Value {
    let path = fixtures().join(format!("{}_run.json", engine.name()));
    serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_exported_files_equal_the_job_the_engine_ran() {
    for &engine in ENGINES {
        let (config, text) = job_of(engine);
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("job");
        let (summary, data) = export(&config, &text, &dir, engine, None).unwrap();
        assert_eq!((data.conversations, data.kept), (8, 8));
        assert_eq!((summary.steps, summary.packs, summary.filler_packs), (1, 5, 1));
        let model = config.model.path.clone();
        let written: BTreeMap<String, String> =
            files(&dir).into_iter().map(|(k, v)| (k, v.replace(&model, "@MODEL@"))).collect();
        let committed = files(&fixtures().join(engine.name()));
        assert_eq!(written.keys().collect::<Vec<_>>(), committed.keys().collect::<Vec<_>>(), "{engine:?}");
        for (name, text) in &committed {
            assert!(
                written[name] == *text,
                "{engine:?}: {name} differs from tests/fixtures/export/{}/{name}",
                engine.name()
            );
        }
        assert_eq!(summary.files, committed.keys().cloned().collect::<Vec<_>>());
    }
}

#[test]
fn the_engines_first_step_has_longctx_loss() {
    for &engine in ENGINES {
        let (config, _) = job_of(engine);
        let (tokenizer, template) = load_tokenizer(Path::new(&config.model.path)).unwrap();
        let (data, _) = load_data(&config, &tokenizer, &template.unwrap()).unwrap();
        let model = load_hf_dir(Path::new(&config.model.path), DType::F32, &Device::Cpu, None).unwrap().model;
        let ours =
            longctx_train::step::evaluate(&model, &data, config.data.batching, LossKind::LongAlign, 256).unwrap();
        let record = run_record(engine);
        let theirs = record["step1"]["loss"].as_f64().unwrap();
        assert!(
            (ours.loss - theirs).abs() < 1e-5 * theirs.abs(),
            "{engine:?}: longctx loss {} vs the engine's first step {theirs}",
            ours.loss
        );
        // The job exported for two GPUs, run as two processes: the same step's loss, and (where
        // the engine initializes LoRA the same way in both runs: TRL) the same gradient.
        // axolotl draws another LoRA A in each run (gradient norms 1.4392 and 1.4438 here).
        if let Some(two) = record.get("step1_two_processes") {
            assert_eq!(two["loss"], record["step1"]["loss"], "{engine:?}");
            if engine == Engine::Trl {
                assert_eq!(two["grad_norm"], record["step1"]["grad_norm"], "{engine:?}");
            }
        }
    }
}

#[test]
fn the_engines_adapter_loads_back_with_its_logits() {
    for &engine in ENGINES {
        let model_dir = PathBuf::from(job_of(engine).0.model.path);
        let record = run_record(engine);
        let mut model = load_hf_dir(&model_dir, DType::F32, &Device::Cpu, None).unwrap().model;
        let adapter_dir = fixtures().join(format!("{}_adapter", engine.name()));
        Adapter::load(&adapter_dir, model.config(), &Device::Cpu).unwrap().apply(&mut model).unwrap();
        let ids: Vec<u32> = record["logit_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
            .collect();
        let n = ids.len();
        let logits = model.forward(&Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap(), 0).unwrap();
        let ours: Vec<Vec<f32>> = logits.squeeze(0).unwrap().to_vec2().unwrap();
        let theirs = record["logits"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        let mut worst = 0.0f64;
        for (a, b) in ours.iter().zip(theirs) {
            for (x, y) in a.iter().zip(b.as_array().unwrap()) {
                worst = worst.max((f64::from(*x) - y.as_f64().unwrap()).abs());
            }
        }
        assert!(worst < 1e-4, "{engine:?}: logits differ by {worst}");
        // The step moved the adapter: its B is no longer zero.
        let base = load_hf_dir(&model_dir, DType::F32, &Device::Cpu, None).unwrap().model.forward(
            &Tensor::from_vec(
                record["logit_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>(),
                (1, n),
                &Device::Cpu,
            )
            .unwrap(),
            0,
        );
        let diff = (base.unwrap() - logits).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff > 1e-3, "{engine:?}: the adapter changes the logits by only {diff}");
    }
}

#[test]
fn what_an_engine_cannot_run_is_refused_before_anything_is_written() {
    let (mut config, text) = job();
    let out = tempfile::tempdir().unwrap();
    config.lora.as_mut().unwrap().base_quant = Some("q4_0".into());
    let err = export(&config, &text, &out.path().join("a"), Engine::Trl, None).unwrap_err().to_string();
    assert!(err.contains("base_quant = \"q4_0\" has no counterpart in trl"), "{err}");
    assert!(!out.path().join("a").exists());
    let (mut config, _) = job();
    config.model.path = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").display().to_string();
    let err = export(&config, &text, &out.path().join("b"), Engine::Trl, None).unwrap_err().to_string();
    assert!(err.contains("not GGUF files"), "{err}");
    let (config, _) = job();
    fs_err::create_dir_all(out.path().join("c")).unwrap();
    fs_err::write(out.path().join("c/x"), "").unwrap();
    let err = export(&config, &text, &out.path().join("c"), Engine::Trl, None).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    // torchtune: the tiny Llama's linear RoPE scaling, half the MLP adapted.
    let err = export(&config, &text, &out.path().join("d"), Engine::Torchtune, None).unwrap_err().to_string();
    assert!(err.contains("torchtune's builders have only Llama 3's scaling"), "{err}");
    let (mut config, text) = job_of(Engine::Torchtune);
    config.lora.as_mut().unwrap().target_modules = vec!["q_proj".into(), "up_proj".into()];
    let err = export(&config, &text, &out.path().join("e"), Engine::Torchtune, None).unwrap_err().to_string();
    assert!(err.contains("adapts the MLP's three projections together"), "{err}");
    let (mut config, text) = job_of(Engine::Torchtune);
    config.model.path = "meta-llama/Llama-3.1-8B-Instruct".into();
    let err = export(&config, &text, &out.path().join("f"), Engine::Torchtune, None).unwrap_err().to_string();
    assert!(err.contains("torchtune reads a local checkpoint"), "{err}");
    assert!(!out.path().join("d").exists() && !out.path().join("e").exists() && !out.path().join("f").exists());
}

/// QLoRA exported to TRL (tests/fixtures/export/job-qlora.toml: the same job with `base_quant =
/// "nf4"`), run with bitsandbytes' NF4 on the CPU: its first step's loss is longctx's loss over
/// the base quantized at load to NF4.
#[test]
fn the_qlora_jobs_first_step_has_longctx_nf4_loss() {
    let text = fs_err::read_to_string(fixtures().join("job-qlora.toml")).unwrap();
    let mut config = TrainConfig::parse(&text).unwrap();
    config.model.path = root().join(&config.model.path).display().to_string();
    config.data.path = Some(root().join(config.data.path.as_ref().unwrap()));
    let format = config.lora().unwrap().base_quant().unwrap().expect("nf4");
    let (tokenizer, template) = load_tokenizer(Path::new(&config.model.path)).unwrap();
    let (data, _) = load_data(&config, &tokenizer, &template.unwrap()).unwrap();
    let mut model = load_hf_dir(Path::new(&config.model.path), DType::F32, &Device::Cpu, None).unwrap().model;
    model.quantize_weights(format).unwrap();
    let ours = longctx_train::step::evaluate(&model, &data, config.data.batching, LossKind::LongAlign, 256).unwrap();
    let record: Value =
        serde_json::from_str(&fs_err::read_to_string(fixtures().join("trl-qlora_run.json")).unwrap()).unwrap();
    let theirs = record["step1"]["loss"].as_f64().unwrap();
    assert!(
        (ours.loss - theirs).abs() < 1e-5 * theirs,
        "longctx NF4 loss {} vs TRL + bitsandbytes {theirs}",
        ours.loss
    );
    // Not the f32 base's loss: the quantization shows.
    let f32_loss = run_record(Engine::Trl)["step1"]["loss"].as_f64().unwrap();
    assert!((theirs - f32_loss).abs() > 1e-2);
}
