//! Model loading shared by the subcommands that run a model.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use longctx_backends::native::{load_model, NativeOptions};
use longctx_models::Loaded;

use crate::cli::Dtype;

/// Loads a GGUF file, a Hugging Face model directory or a hub id with an optional `KIND:FACTOR`
/// RoPE override and LoRA adapter.
pub(crate) fn load(
    model: &Path,
    dtype: Dtype,
    rope_scaling: Option<&str>,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<Loaded> {
    let options = NativeOptions {
        dtype: dtype.candle(),
        rope_scaling: rope_scaling.map(str::to_string),
        adapter: adapter.map(Path::to_path_buf),
        ..NativeOptions::default()
    };
    Ok(load_model(model, &options, device)?)
}
