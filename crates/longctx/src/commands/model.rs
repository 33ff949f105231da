//! Model loading shared by the subcommands that run a model.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use longctx_backends::native::{load_model, NativeOptions, Quantize};
use longctx_models::Loaded;

use crate::cli::{BenchGenerateArgs, Dtype, GenerateArgs};

/// Loads a GGUF file, a Hugging Face model directory or a hub id with an optional `KIND:FACTOR`
/// RoPE override, LoRA adapter and quantization at load.
pub(crate) fn load(
    model: &Path,
    dtype: Dtype,
    rope_scaling: Option<&str>,
    adapter: Option<&Path>,
    quantize: Option<Quantize>,
    device: &Device,
) -> Result<Loaded> {
    let options = NativeOptions {
        dtype: dtype.candle(),
        quantize,
        rope_scaling: rope_scaling.map(str::to_string),
        adapter: adapter.map(Path::to_path_buf),
        ..NativeOptions::default()
    };
    Ok(load_model(model, &options, device)?)
}

/// The arguments of the subcommands that load one model (`--model`, `--dtype`,
/// `--rope-scaling`, `--adapter`, `--quantize`).
pub(crate) trait ModelArgs {
    /// Loads the model they name.
    fn load_model(&self, device: &Device) -> Result<Loaded>;
}

macro_rules! model_args {
    ($($args:ty),*) => {$(
        impl ModelArgs for $args {
            fn load_model(&self, device: &Device) -> Result<Loaded> {
                load(&self.model, self.dtype, self.rope_scaling.as_deref(), self.adapter.as_deref(), self.quantize, device)
            }
        }
    )*};
}

model_args!(GenerateArgs, BenchGenerateArgs);
