//! The parts of a Hugging Face `config.json` that the runtime reads, and their resolution into
//! RoPE parameters (`rope_scaling` in both of its historical spellings, `type` and
//! `rope_type`), plus the `KIND:FACTOR` override of the command line.

use serde::Deserialize;

use crate::rope::{RopeParams, RopeScaling};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.json` is not valid or lacks a required field.
    #[error("config.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A `rope_scaling` this runtime does not implement.
    #[error("unsupported rope_scaling type `{0}` (supported: default, linear, dynamic, yarn, llama3)")]
    UnsupportedRopeType(String),
    /// A `rope_scaling` without a field its type needs.
    #[error("rope_scaling of type `{kind}` needs `{field}`")]
    MissingRopeField {
        /// The scaling type.
        kind: String,
        /// The missing field.
        field: &'static str,
    },
    /// A configuration value this runtime does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A malformed `KIND:FACTOR` override.
    #[error(
        "bad RoPE override `{0}`: expected KIND:FACTOR with KIND one of linear, dynamic, yarn, llama3 (e.g. linear:4)"
    )]
    BadOverride(String),
}

/// The fields of a Hugging Face decoder config that concern attention heads and positions.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// Model width.
    pub hidden_size: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Explicit head dimension (otherwise `hidden_size / num_attention_heads`).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Context length the positions were trained for.
    pub max_position_embeddings: usize,
    /// Share of each head that is rotated.
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    /// `rope_scaling` as written (`null` or an object).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

fn default_theta() -> f64 {
    10_000.0
}

impl HfConfig {
    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The resolved RoPE parameters.
    pub fn rope_params(&self) -> Result<RopeParams, ConfigError> {
        self.rope_params_with(None)
    }

    /// The resolved RoPE parameters, with `scaling` (when given) in place of the config's.
    pub fn rope_params_with(&self, scaling: Option<RopeScaling>) -> Result<RopeParams, ConfigError> {
        Ok(RopeParams {
            head_dim: self.head_dim(),
            partial_rotary_factor: self.partial_rotary_factor.unwrap_or(1.0),
            theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            scaling: match (scaling, &self.rope_scaling) {
                (Some(s), _) => s,
                (None, None | Some(serde_json::Value::Null)) => RopeScaling::None,
                (None, Some(v)) => parse_rope_scaling(v)?,
            },
        })
    }

    /// `head_dim`, or `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

/// Token ids written as a number or a list of numbers (`eos_token_id` of `config.json` and
/// `generation_config.json`); anything else gives none.
pub fn token_ids(v: &serde_json::Value) -> Vec<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32).into_iter().collect(),
        serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_u64).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

/// Resolves a `rope_scaling` object as transformers' `rope_config_validation` and
/// `ROPE_INIT_FUNCTIONS` read it (`rope_type`, else the legacy `type`).
pub fn parse_rope_scaling(v: &serde_json::Value) -> Result<RopeScaling, ConfigError> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default")
        .to_string();
    let num = |field: &'static str| v.get(field).and_then(serde_json::Value::as_f64);
    let need =
        |field: &'static str| num(field).ok_or_else(|| ConfigError::MissingRopeField { kind: kind.clone(), field });
    Ok(match kind.as_str() {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: need("factor")? },
        "dynamic" => RopeScaling::DynamicNtk { factor: need("factor")? },
        // `get("beta_fast") or 32`: a 0 or null falls back to the default, as in Python.
        "yarn" => RopeScaling::Yarn {
            factor: need("factor")?,
            attention_factor: num("attention_factor"),
            beta_fast: num("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
            beta_slow: num("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")?,
        },
        other => return Err(ConfigError::UnsupportedRopeType(other.to_string())),
    })
}

/// Parses a command-line override `KIND:FACTOR` (`linear:4`, `dynamic:4`, `yarn:4`,
/// `llama3:8`); llama3 takes Llama 3.1's other parameters (1, 4) and the model's
/// `max_position_embeddings` as the original length.
pub fn parse_override(s: &str, max_position_embeddings: usize) -> Result<RopeScaling, ConfigError> {
    let bad = || ConfigError::BadOverride(s.to_string());
    let (kind, factor) = s.split_once(':').ok_or_else(bad)?;
    let factor: f64 = factor.parse().map_err(|_| bad())?;
    if !(factor.is_finite() && factor > 0.0) {
        return Err(bad());
    }
    Ok(match kind {
        "linear" => RopeScaling::Linear { factor },
        "dynamic" => RopeScaling::DynamicNtk { factor },
        "yarn" => RopeScaling::Yarn { factor, attention_factor: None, beta_fast: 32.0, beta_slow: 1.0 },
        "llama3" => RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: max_position_embeddings as f64,
        },
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama31_config() {
        let cfg = HfConfig::from_json(
            r#"{"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 131072,
                "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#,
        )
        .unwrap();
        let p = cfg.rope_params().unwrap();
        assert_eq!(p.head_dim, 128);
        assert!(matches!(p.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn legacy_type_key_and_errors() {
        let v: serde_json::Value = serde_json::json!({"type": "linear", "factor": 2});
        assert_eq!(parse_rope_scaling(&v).unwrap(), RopeScaling::Linear { factor: 2.0 });
        let v = serde_json::json!({"type": "longrope", "factor": 2});
        assert!(parse_rope_scaling(&v).unwrap_err().to_string().contains("longrope"));
        let v = serde_json::json!({"rope_type": "dynamic"});
        assert!(parse_rope_scaling(&v).unwrap_err().to_string().contains("needs `factor`"));
        assert_eq!(parse_override("linear:4", 4096).unwrap(), RopeScaling::Linear { factor: 4.0 });
        assert!(parse_override("linear", 4096).is_err());
        assert!(parse_override("cubic:2", 4096).is_err());
        assert!(parse_override("linear:-1", 4096).is_err());
    }
}
