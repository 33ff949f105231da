//! An adapter merged into its base model (`longctx merge`): every adapted weight becomes
//! `W + scale · B · A`, written with the base model's other files as a Hugging Face model
//! directory that any runtime loads without the adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use longctx_models::llama::LlamaHfConfig;
use longctx_models::load::{resolve_model, weight_files};
use longctx_models::lora::{module_name, Adapter};

use crate::{Error, Result};

/// Merges `adapter` into the safetensors model `model` (directory or hub id), writing `out`
/// (a new directory, filled in a temporary one renamed into place). Returns the number of
/// weights changed.
pub fn merge(model: &str, adapter: &Path, out: &Path) -> Result<usize> {
    if longctx_models::load::is_gguf(Path::new(model)) {
        return Err(Error::Config(format!(
            "{model}: merging needs the safetensors model (a GGUF file's weights are quantized); apply the adapter at load time with --adapter instead"
        )));
    }
    if out.exists() {
        return Err(Error::Config(format!("{}: already exists; choose a new directory", out.display())));
    }
    let dir = resolve_model(model)?;
    let config_path = dir.join("config.json");
    let raw: LlamaHfConfig = serde_json::from_str(&fs_err::read_to_string(&config_path)?)
        .map_err(|e| Error::from(e).in_file(&config_path))?;
    let config = raw.into_config(None).map_err(longctx_models::ModelError::from)?;
    let adapter = Adapter::load(adapter, &config, &Device::Cpu)?;
    let mut deltas: HashMap<String, Tensor> = HashMap::new();
    for (&(layer, part), lora) in &adapter.loras {
        deltas.insert(format!("{}.weight", module_name(layer, part)), (lora.b.matmul(&lora.a)? * lora.scale)?);
    }
    let tmp: PathBuf = out.with_extension("tmp");
    if tmp.exists() {
        fs_err::remove_dir_all(&tmp)?;
    }
    fs_err::create_dir_all(&tmp)?;
    let mut merged = 0;
    let files = weight_files(&dir)?;
    for file in &files {
        let mut tensors = candle_core::safetensors::load(file, &Device::Cpu)?;
        for (name, t) in &mut tensors {
            if let Some(delta) = deltas.get(name) {
                let dtype = t.dtype();
                *t = (t.to_dtype(DType::F32)? + delta)?.to_dtype(dtype)?;
                merged += 1;
            }
        }
        let name = file.file_name().expect("a weight file has a name");
        candle_core::safetensors::save(&tensors, tmp.join(name))?;
    }
    if merged != deltas.len() {
        fs_err::remove_dir_all(&tmp)?;
        return Err(Error::Config(format!(
            "{}: {} of the adapter's {} weights are not in the model's files",
            dir.display(),
            deltas.len() - merged,
            deltas.len()
        )));
    }
    for entry in fs_err::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let is_weights = files.iter().any(|f| f == &path);
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        if path.is_file() && !is_weights && matches!(ext.as_str(), "json" | "txt" | "model") {
            fs_err::copy(&path, tmp.join(&name))?;
        }
    }
    fs_err::rename(&tmp, out)?;
    Ok(merged)
}
