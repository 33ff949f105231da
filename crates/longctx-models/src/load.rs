//! Loading a model in Hugging Face layout from a local directory: `config.json`, the weights
//! (`model.safetensors`, or the shards listed in `model.safetensors.index.json`),
//! `tokenizer.json`, the chat template and special tokens of `tokenizer_config.json`, and the
//! end-of-sequence ids of `generation_config.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::chat_template::ChatTemplate;
use crate::config::{parse_override, token_ids};
use crate::llama::{Llama, LlamaHfConfig};
use crate::tokenizer::HfTokenizer;
use crate::{Loaded, ModelError};

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

/// A special token of `tokenizer_config.json`: a string or an `AddedToken` object.
fn special_token(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::to_string).or_else(|| v.get("content").and_then(|c| c.as_str()).map(str::to_string))
}

/// The chat template of `tokenizer_config.json` (a string, or a list of named templates of
/// which `default` is used), compiled with the config's BOS and EOS tokens.
fn chat_template(dir: &Path) -> Result<Option<ChatTemplate>, ModelError> {
    let path = dir.join("tokenizer_config.json");
    let jinja = dir.join("chat_template.jinja");
    if !path.is_file() && !jinja.is_file() {
        return Ok(None);
    }
    let cfg: serde_json::Value = if path.is_file() {
        serde_json::from_str(&fs_err::read_to_string(&path)?)
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?
    } else {
        serde_json::Value::Null
    };
    // transformers >= 4.47 saves the template as chat_template.jinja (and reads it before the
    // tokenizer_config.json key).
    let (source, path) =
        if jinja.is_file() { (Some(fs_err::read_to_string(&jinja)?), jinja) } else { (template_in(&cfg), path) };
    let Some(source) = source else { return Ok(None) };
    let bos = special_token(&cfg["bos_token"]).unwrap_or_default();
    let eos = special_token(&cfg["eos_token"]).unwrap_or_default();
    ChatTemplate::new(&source, &bos, &eos).map(Some).map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))
}

/// The `chat_template` of a tokenizer_config.json (a string, or the `default` of a list).
fn template_in(cfg: &serde_json::Value) -> Option<String> {
    match &cfg["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => {
            list.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(str::to_string)
        }
        _ => None,
    }
}

/// End-of-sequence ids of `generation_config.json` (a number or a list), if present.
fn generation_eos(dir: &Path) -> Vec<u32> {
    let Ok(text) = fs_err::read_to_string(dir.join("generation_config.json")) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    token_ids(&v["eos_token_id"])
}

/// Loads a Llama-family model directory in `dtype` on `device`, with an optional RoPE
/// override `KIND:FACTOR` (see [`parse_override`]).
pub fn load_hf_dir(
    dir: &Path,
    dtype: DType,
    device: &Device,
    rope_override: Option<&str>,
) -> Result<Loaded, ModelError> {
    let config_path = dir.join("config.json");
    let text = fs_err::read_to_string(&config_path)?;
    let raw: LlamaHfConfig =
        serde_json::from_str(&text).map_err(|e| ModelError::Load(format!("{}: {e}", config_path.display())))?;
    let rope = rope_override.map(|s| parse_override(s, raw.positions.max_position_embeddings)).transpose()?;
    let mut config = raw.into_config(rope)?;
    for id in generation_eos(dir) {
        if !config.eos_token_ids.contains(&id) {
            config.eos_token_ids.push(id);
        }
    }
    let files = weight_files(dir)?;
    let weight_bytes = files.iter().map(|f| fs_err::metadata(f).map(|m| m.len())).sum::<Result<u64, _>>()?;
    // SAFETY: the weight files are mapped read-only; longctx does not modify them while the
    // model lives, and a user who rewrites them underneath a running process gets garbage,
    // not unsoundness in longctx's own data structures beyond the mapped tensors.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
    let model = Llama::new(config, vb)?;
    let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
    Ok(Loaded { model, tokenizer, chat_template: chat_template(dir)?, weight_bytes })
}

/// Whether `path` names a GGUF file (by its extension, in any case).
pub fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The tokenizer and chat template of a model directory (`tokenizer.json`,
/// `tokenizer_config.json`) or GGUF file, without the weights.
pub fn load_tokenizer(path: &Path) -> Result<(HfTokenizer, Option<ChatTemplate>), ModelError> {
    if is_gguf(path) {
        return crate::gguf::load_gguf_tokenizer(path);
    }
    let dir = resolve_model(&path.to_string_lossy())?;
    let file = dir.join("tokenizer.json");
    if !file.is_file() {
        return Err(ModelError::Load(format!("{}: no tokenizer.json", dir.display())));
    }
    Ok((HfTokenizer::from_file(&file)?, chat_template(&dir)?))
}

/// The hub repository `spec` names (`org/name`, optionally `org/name@revision`), and how to
/// say that one of its files could not be had.
#[allow(clippy::type_complexity)]
fn hub_repo(
    spec: &str,
) -> Result<(hf_hub::api::sync::ApiRepo, impl Fn(&str, &dyn std::fmt::Display) -> ModelError + '_), ModelError> {
    let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let looks_like_repo = repo.split('/').count() == 2 && !repo.starts_with('.') && !repo.starts_with('/');
    if !looks_like_repo {
        return Err(ModelError::Load(format!(
            "{spec}: no such file or directory, and not a hub repository id (org/name)"
        )));
    }
    let hub_error = move |file: &str, e: &dyn std::fmt::Display| {
        ModelError::Load(format!(
            "`{spec}` is not a local path, so it was taken as a hub id, but `{file}` of the model repository `{repo}` could not be had from the Hugging Face hub: {e}. If this machine is offline, download the model elsewhere and pass its directory"
        ))
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env().build().map_err(|e| hub_error("config.json", &e))?;
    let handle = api.repo(hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, revision.to_string()));
    Ok((handle, hub_error))
}

/// The `config.json` of the hub repository `spec` names (`org/name[@revision]`), fetched alone
/// (into the hub cache; what planning needs, without the weights).
pub fn hub_config(spec: &str) -> Result<PathBuf, ModelError> {
    let (handle, hub_error) = hub_repo(spec)?;
    handle.get("config.json").map_err(|e| hub_error("config.json", &e))
}

/// Where a model comes from: a local directory, or a repository id on the Hugging Face hub
/// (`org/name`, optionally `org/name@revision`), downloaded into the hub cache with hf-hub
/// (honours `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`). Returns the local directory.
pub fn resolve_model(spec: &str) -> Result<PathBuf, ModelError> {
    resolve(spec, true)
}

/// Like [`resolve_model`], without the weights: a hub id's config.json, tokenizer files and
/// chat template only (what planning or writing a job for another trainer needs).
pub fn resolve_model_files(spec: &str) -> Result<PathBuf, ModelError> {
    resolve(spec, false)
}

fn resolve(spec: &str, weights: bool) -> Result<PathBuf, ModelError> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let (handle, hub_error) = hub_repo(spec)?;
    // Some(path), or None when the repository has no such file (HTTP 404).
    let optional = |file: &str| -> Result<Option<PathBuf>, ModelError> {
        match handle.get(file) {
            Ok(p) => Ok(Some(p)),
            Err(hf_hub::api::sync::ApiError::RequestError(e)) if matches!(*e, ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(hub_error(file, &e)),
        }
    };
    let config = handle.get("config.json").map_err(|e| hub_error("config.json", &e))?;
    handle.get("tokenizer.json").map_err(|e| hub_error("tokenizer.json", &e))?;
    optional("tokenizer_config.json")?;
    optional("generation_config.json")?;
    optional("chat_template.jinja")?;
    if weights {
        if let Some(index) = optional("model.safetensors.index.json")? {
            for shard in weight_files(index.parent().unwrap_or(Path::new(".")))? {
                let name = shard.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                handle.get(&name).map_err(|e| hub_error(&name, &e))?;
            }
        } else {
            handle.get("model.safetensors").map_err(|e| hub_error("model.safetensors", &e))?;
        }
    }
    // hf-hub lays every file of one revision in the same snapshot directory.
    Ok(config.parent().expect("a downloaded file has a directory").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use longctx_core::ChatMessage;

    /// transformers ≥ 4.47 writes the template to chat_template.jinja, not tokenizer_config.json.
    #[test]
    fn a_chat_template_jinja_file_is_read_and_wins() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train/llama");
        let dir = tempfile::tempdir().unwrap();
        let mut cfg: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(fixture.join("tokenizer_config.json")).unwrap()).unwrap();
        let source = cfg["chat_template"].as_str().unwrap().to_string();
        cfg.as_object_mut().unwrap().remove("chat_template");
        fs_err::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        fs_err::write(dir.path().join("chat_template.jinja"), &source).unwrap();
        let messages = [ChatMessage::new("user", "Hi")];
        let theirs = chat_template(&fixture).unwrap().unwrap().render(&messages, true).unwrap();
        let ours = chat_template(dir.path()).unwrap().unwrap().render(&messages, true).unwrap();
        assert_eq!(ours, theirs);
        fs_err::write(dir.path().join("chat_template.jinja"), "X{{ messages[0].content }}").unwrap();
        assert_eq!(chat_template(dir.path()).unwrap().unwrap().render(&messages, false).unwrap(), "XHi");
    }
}
