//! Model loading shared by the subcommands that run a model.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use longctx_models::gguf::load_gguf;
use longctx_models::load::{load_hf_dir, resolve_model, Loaded};

use crate::cli::Dtype;

impl Dtype {
    pub(crate) fn candle(self) -> DType {
        match self {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::Bf16 => DType::BF16,
        }
    }
}

/// Loads a GGUF file, a Hugging Face model directory or a hub id with an optional `KIND:FACTOR` RoPE override.
pub(crate) fn load(model: &Path, dtype: Dtype, rope_scaling: Option<&str>, device: &Device) -> Result<Loaded> {
    if model.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        if dtype != Dtype::F32 {
            bail!(
                "{}: GGUF weights run quantized with f32 activations; --dtype applies to safetensors models",
                model.display()
            );
        }
        return load_gguf(model, device, rope_scaling).with_context(|| format!("loading {}", model.display()));
    }
    let dir = resolve_model(&model.to_string_lossy())?;
    if !dir.is_dir() {
        bail!("{}: not a model directory (expected config.json, *.safetensors and tokenizer.json)", dir.display());
    }
    load_hf_dir(&dir, dtype.candle(), device, rope_scaling).with_context(|| format!("loading {}", dir.display()))
}
