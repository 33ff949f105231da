//! Loading a model in Hugging Face layout from a local directory: `config.json`, the weights
//! (`model.safetensors`, or the shards listed in `model.safetensors.index.json`) and
//! `tokenizer.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::llama::{Llama, LlamaHfConfig};
use crate::rope::RopeScaling;
use crate::tokenizer::HfTokenizer;
use crate::ModelError;

/// The weight files of a model directory, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = fs_err::read_to_string(&index)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Load(format!("{}: {e}", index.display())))?;
        let files: BTreeSet<&str> = v["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::Load(format!("{}: no `weight_map`", index.display())))?
            .values()
            .filter_map(serde_json::Value::as_str)
            .collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    Err(ModelError::Load(format!(
        "{}: no model.safetensors or model.safetensors.index.json (expected a Hugging Face model directory)",
        dir.display()
    )))
}

/// A model and its tokenizer.
pub struct Loaded {
    /// The decoder.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: HfTokenizer,
}

/// Loads a Llama-family model directory in `dtype` on `device`, with an optional RoPE override.
pub fn load_hf_dir(
    dir: &Path,
    dtype: DType,
    device: &Device,
    rope_override: Option<RopeScaling>,
) -> Result<Loaded, ModelError> {
    let config_path = dir.join("config.json");
    let text = fs_err::read_to_string(&config_path)?;
    let raw: LlamaHfConfig =
        serde_json::from_str(&text).map_err(|e| ModelError::Load(format!("{}: {e}", config_path.display())))?;
    let config = raw.into_config(rope_override)?;
    let files = weight_files(dir)?;
    // SAFETY: the weight files are mapped read-only; longctx does not modify them while the
    // model lives, and a user who rewrites them underneath a running process gets garbage,
    // not unsoundness in longctx's own data structures beyond the mapped tensors.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
    let model = Llama::new(config, vb)?;
    let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
    Ok(Loaded { model, tokenizer })
}
