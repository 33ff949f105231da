//! LoRA adapters in PEFT's on-disk format (peft 0.13's `LoraConfig` and `save_pretrained`),
//! read and written so that an adapter trained by PEFT elsewhere runs here and one trained
//! here loads in `peft` unchanged:
//!
//! ```text
//! DIR/adapter_config.json        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
//!                                 "target_modules", "lora_dropout", "bias": "none", "use_rslora",
//!                                 "base_model_name_or_path", "rank_pattern", "alpha_pattern", …}
//! DIR/adapter_model.safetensors  base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in]
//!                                base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight [out, r]
//!                                (… k/v/o_proj, mlp.gate/up/down_proj)
//! ```
//!
//! The update of a projection is `scale · B · A`, with `scale = alpha / r`, or `alpha / √r`
//! with rsLoRA (`use_rslora`); `rank_pattern` / `alpha_pattern` override `r` / `alpha` for the
//! modules whose name ends with one of their keys, as peft matches them (`.*\.{key}$`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::llama::{Config, Llama, Lora, Part};
use crate::ModelError;

/// `adapter_config.json` of a LoRA adapter (the fields longctx reads or writes; others are
/// kept when read and written back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// `LORA`.
    pub peft_type: String,
    /// `CAUSAL_LM`.
    #[serde(default)]
    pub task_type: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scaling numerator (written as an integer when it is one, as peft writes it).
    #[serde(serialize_with = "integral_as_int")]
    pub lora_alpha: f64,
    /// The adapted modules: a list of names (`q_proj`, …) or one regular expression over full
    /// module names.
    pub target_modules: TargetModules,
    /// Dropout on the update's input while training.
    #[serde(default, deserialize_with = "null_as_default")]
    pub lora_dropout: f64,
    /// `none` (bias terms of the adapted modules are not trained).
    #[serde(default = "default_bias")]
    pub bias: String,
    /// rsLoRA: `alpha / √r` instead of `alpha / r`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub use_rslora: bool,
    /// The model the adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Per-module ranks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alphas.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// DoRA (not supported).
    #[serde(default, deserialize_with = "null_as_default")]
    pub use_dora: bool,
    /// Weights stored transposed (GPT-2 Conv1D; not supported).
    #[serde(default, deserialize_with = "null_as_default")]
    pub fan_in_fan_out: bool,
    /// Modules trained in full besides the adapter (not supported).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Every other key of the file, kept as it was.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A field PEFT may write as `null` (peft 0.20 writes `"fan_in_fan_out": null`): its default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn integral_as_int<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn default_bias() -> String {
    "none".into()
}

/// `target_modules`: names, or one regular expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names matched at the end of the full name (`q_proj`).
    Names(Vec<String>),
    /// A regular expression the full module name must match entirely.
    Pattern(String),
}

impl LoraConfig {
    /// A new adapter's configuration, as peft 0.13 writes it for a causal LM.
    pub fn new(r: usize, lora_alpha: f64, parts: &[Part], lora_dropout: f64, use_rslora: bool) -> Self {
        let other = [
            ("auto_mapping", serde_json::Value::Null),
            ("inference_mode", true.into()),
            ("init_lora_weights", true.into()),
            ("layer_replication", serde_json::Value::Null),
            ("layers_pattern", serde_json::Value::Null),
            ("layers_to_transform", serde_json::Value::Null),
            ("loftq_config", serde_json::json!({})),
            ("megatron_config", serde_json::Value::Null),
            ("megatron_core", "megatron.core".into()),
            ("revision", serde_json::Value::Null),
        ];
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r,
            lora_alpha,
            target_modules: TargetModules::Names(parts.iter().map(|p| p.module_name().to_string()).collect()),
            lora_dropout,
            bias: "none".into(),
            use_rslora,
            base_model_name_or_path: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            use_dora: false,
            fan_in_fan_out: false,
            modules_to_save: None,
            other: other.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The rank and alpha of module `name` (`model.layers.3.self_attn.q_proj`): the first
    /// pattern key (ranks, then alphas) that ends the name, as peft picks it.
    pub fn rank_alpha(&self, name: &str) -> (usize, f64) {
        let key = self
            .rank_pattern
            .keys()
            .chain(self.alpha_pattern.keys())
            .find(|k| name.ends_with(&format!(".{k}")) || name == k.as_str());
        match key {
            Some(k) => (
                self.rank_pattern.get(k).copied().unwrap_or(self.r),
                self.alpha_pattern.get(k).copied().unwrap_or(self.lora_alpha),
            ),
            None => (self.r, self.lora_alpha),
        }
    }

    /// The update's scale for rank `r` and `alpha`.
    pub fn scale(&self, r: usize, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }
}

/// The module name of projection `part` of layer `layer` in a Llama-family checkpoint.
pub fn module_name(layer: usize, part: Part) -> String {
    format!("model.layers.{layer}.{}", part.hf_path())
}

/// The adapter file's tensor names of projection `part` of layer `layer`: `(lora_A, lora_B)`.
pub fn tensor_names(layer: usize, part: Part) -> (String, String) {
    let m = module_name(layer, part);
    (format!("base_model.model.{m}.lora_A.weight"), format!("base_model.model.{m}.lora_B.weight"))
}

/// A LoRA adapter: its configuration and the update of each adapted projection.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `adapter_config.json`.
    pub config: LoraConfig,
    /// The updates by (layer, projection), `A` and `B` in f32 with their scale.
    pub loras: BTreeMap<(usize, Part), Lora>,
}

fn load_error(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Load(format!("{}: {message}", path.display()))
}

impl Adapter {
    /// Reads a PEFT adapter directory for a model of `model` configuration, on `device`:
    /// every tensor must be the `lora_A`/`lora_B` of a projection of the model, with shapes
    /// that fit it (an error names the tensor otherwise).
    pub fn load(dir: &Path, model: &Config, device: &Device) -> Result<Self, ModelError> {
        let config_path = dir.join("adapter_config.json");
        let text = fs_err::read_to_string(&config_path)?;
        let config: LoraConfig = serde_json::from_str(&text).map_err(|e| load_error(&config_path, e))?;
        let unsupported = |what: &str| load_error(&config_path, format!("{what} is not supported"));
        if config.peft_type != "LORA" {
            return Err(load_error(&config_path, format!("peft_type `{}` (only LORA is supported)", config.peft_type)));
        }
        if config.use_dora {
            return Err(unsupported("DoRA (`use_dora: true`)"));
        }
        if config.fan_in_fan_out {
            return Err(unsupported("`fan_in_fan_out: true`"));
        }
        if config.bias != "none" {
            return Err(unsupported(&format!("bias `{}` (only `none`)", config.bias)));
        }
        if config.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("`modules_to_save` (fully trained modules besides the adapter)"));
        }
        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            return Err(load_error(
                &weights_path,
                "missing (only the safetensors format is read; an adapter_model.bin can be converted with peft)",
            ));
        }
        let tensors = candle_core::safetensors::load(&weights_path, device)?;
        let mut pairs: BTreeMap<(usize, Part), (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (name, tensor) in &tensors {
            let (layer, part, is_a) = parse_name(name).ok_or_else(|| {
                load_error(
                    &weights_path,
                    format!("tensor `{name}` is not a LoRA weight of a decoder projection (q/k/v/o/gate/up/down_proj)"),
                )
            })?;
            if layer >= model.num_layers {
                return Err(load_error(
                    &weights_path,
                    format!("tensor `{name}`: the model has {} layers", model.num_layers),
                ));
            }
            let entry = pairs.entry((layer, part)).or_default();
            let slot = if is_a { &mut entry.0 } else { &mut entry.1 };
            *slot = Some(tensor.to_dtype(DType::F32)?);
        }
        if pairs.is_empty() {
            return Err(load_error(&weights_path, "no LoRA tensors"));
        }
        let mut loras = BTreeMap::new();
        for ((layer, part), (a, b)) in pairs {
            let (a_name, b_name) = tensor_names(layer, part);
            let a = a.ok_or_else(|| load_error(&weights_path, format!("`{b_name}` has no `{a_name}`")))?;
            let b = b.ok_or_else(|| load_error(&weights_path, format!("`{a_name}` has no `{b_name}`")))?;
            let (fin, fout) = part.features(model).expect("a projection");
            let (r, alpha) = config.rank_alpha(&module_name(layer, part));
            if a.dims() != [r, fin] {
                return Err(load_error(
                    &weights_path,
                    format!("tensor `{a_name}` has shape {:?}; this model needs [{r}, {fin}] (rank {r})", a.dims()),
                ));
            }
            if b.dims() != [fout, r] {
                return Err(load_error(
                    &weights_path,
                    format!("tensor `{b_name}` has shape {:?}; this model needs [{fout}, {r}]", b.dims()),
                ));
            }
            loras.insert((layer, part), Lora { a, b, scale: config.scale(r, alpha) });
        }
        Ok(Self { config, loras })
    }

    /// Puts the updates into `model` (replacing any it had).
    pub fn apply(&self, model: &mut Llama) -> Result<(), ModelError> {
        for (&(layer, part), lora) in &self.loras {
            model.set_lora(layer, part, Some(lora.clone()))?;
        }
        Ok(())
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs_err::create_dir_all(dir)?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (&(layer, part), lora) in &self.loras {
            let (a, b) = tensor_names(layer, part);
            tensors.insert(a, lora.a.to_dtype(DType::F32)?.contiguous()?);
            tensors.insert(b, lora.b.to_dtype(DType::F32)?.contiguous()?);
        }
        candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
        let text = serde_json::to_string_pretty(&self.config).map_err(|e| ModelError::Load(e.to_string()))?;
        fs_err::write(dir.join("adapter_config.json"), text + "\n")?;
        Ok(())
    }
}

/// `(layer, part, is_a)` of `base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}[.default].weight`.
fn parse_name(name: &str) -> Option<(usize, Part, bool)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let rest = rest.strip_suffix(".weight")?;
    let rest = rest.strip_suffix(".default").unwrap_or(rest);
    let (module, which) = rest.rsplit_once('.')?;
    let is_a = match which {
        "lora_A" => true,
        "lora_B" => false,
        _ => return None,
    };
    let part = Part::PROJECTIONS.into_iter().find(|p| p.hf_path() == module)?;
    Some((layer, part, is_a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_peft_writes_as_null_take_their_defaults() {
        let text = r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
            "fan_in_fan_out": null, "lora_dropout": null, "use_rslora": null, "use_dora": null,
            "rank_pattern": null, "alpha_pattern": null, "megatron_config": null}"#;
        let c: LoraConfig = serde_json::from_str(text).unwrap();
        assert!(!c.fan_in_fan_out && !c.use_rslora && !c.use_dora);
        assert_eq!(c.lora_dropout, 0.0);
        assert!(c.rank_pattern.is_empty() && c.alpha_pattern.is_empty());
    }

    #[test]
    fn names_parse_both_ways() {
        for part in Part::PROJECTIONS {
            let (a, b) = tensor_names(3, part);
            assert_eq!(parse_name(&a), Some((3, part, true)));
            assert_eq!(parse_name(&b), Some((3, part, false)));
        }
        assert_eq!(
            parse_name("base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight"),
            Some((0, Part::Up, false))
        );
        assert_eq!(parse_name("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(parse_name("base_model.model.model.layers.0.input_layernorm.lora_A.weight"), None);
    }

    #[test]
    fn patterns_override_rank_and_alpha_and_rslora_scales_by_the_root() {
        let mut c = LoraConfig::new(8, 16.0, &[Part::Q, Part::V], 0.0, false);
        c.rank_pattern.insert("v_proj".into(), 4);
        c.alpha_pattern.insert("layers.1.self_attn.q_proj".into(), 2.0);
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.v_proj"), (4, 16.0));
        assert_eq!(c.rank_alpha("model.layers.1.self_attn.q_proj"), (8, 2.0));
        assert_eq!(c.rank_alpha("model.layers.11.self_attn.q_proj"), (8, 16.0));
        assert_eq!(c.scale(4, 16.0), 4.0);
        c.use_rslora = true;
        assert_eq!(c.scale(4, 16.0), 8.0);
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"peft_type\":\"LORA\"") && text.contains("\"megatron_core\":\"megatron.core\""));
        assert_eq!(serde_json::from_str::<LoraConfig>(&text).unwrap(), c);
    }
}
