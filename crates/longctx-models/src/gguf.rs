//! Loading a Llama-family model from a GGUF file (llama.cpp's format): the configuration from
//! the `{arch}.*` metadata, quantized weights (every type candle's quantized matmul supports),
//! the tokenizer rebuilt from `tokenizer.ggml.*` and the chat template of
//! `tokenizer.chat_template`.
//!
//! llama.cpp's converter permutes the rows of `attn_q`/`attn_k` of `llama` models so that its
//! rotary kernel can rotate adjacent pairs; the loader undoes that permutation on the quantized
//! rows, so that the one decoder of [`crate::llama`] runs GGUF and safetensors weights alike.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::chat_template::ChatTemplate;
use crate::config::parse_override;
use crate::llama::{Config, Embed, Llama, Part, Proj, WeightSource};
use crate::qmatmul::{BlockKind, QuantMatMul, QuantMatrix};
use crate::rope::{RopeParams, RopeScaling};
use crate::tokenizer::HfTokenizer;
use crate::{Loaded, ModelError};

/// Architectures (`general.architecture`) the decoder runs.
const ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// An open GGUF file: its metadata, tensor directory and reader.
pub struct GgufFile {
    content: Content,
    reader: RefCell<BufReader<fs_err::File>>,
    path: String,
}

impl GgufFile {
    /// Reads the header of `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let mut reader = BufReader::new(fs_err::File::open(path)?);
        let content = Content::read(&mut reader)
            .map_err(|e| ModelError::Load(format!("{}: not a GGUF file: {e}", path.display())))?;
        Ok(Self { content, reader: RefCell::new(reader), path: path.display().to_string() })
    }

    fn err(&self, msg: impl std::fmt::Display) -> ModelError {
        ModelError::Load(format!("{}: {msg}", self.path))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(|v| v.to_string().ok()).map(String::as_str)
    }

    /// An integer of any width.
    fn meta_u64(&self, key: &str) -> Option<u64> {
        self.meta(key).and_then(|v| match v {
            Value::U8(x) => Some(u64::from(*x)),
            Value::U16(x) => Some(u64::from(*x)),
            Value::U32(x) => Some(u64::from(*x)),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        })
    }

    fn meta_f64(&self, key: &str) -> Option<f64> {
        self.meta(key).and_then(|v| match v {
            Value::F32(x) => Some(f64::from(*x)),
            Value::F64(x) => Some(*x),
            _ => None,
        })
    }

    fn meta_bool(&self, key: &str) -> Option<bool> {
        self.meta(key).and_then(|v| v.to_bool().ok())
    }

    fn need_usize(&self, key: &str) -> Result<usize, ModelError> {
        self.meta_u64(key).map(|v| v as usize).ok_or_else(|| self.err(format!("metadata `{key}` is missing")))
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads tensor `name` onto `device`.
    pub fn tensor(&self, name: &str, device: &Device) -> candle_core::Result<QTensor> {
        let mut reader = self.reader.borrow_mut();
        self.content
            .tensor(&mut *reader, name, device)
            .map_err(|e| candle_core::Error::Msg(format!("{}: tensor `{name}`: {e}", self.path)))
    }

    /// The storage type of tensor `name`, if the file has it.
    pub fn tensor_type(&self, name: &str) -> Option<candle_core::quantized::GgmlDType> {
        self.content.tensor_infos.get(name).map(|t| t.ggml_dtype)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        let arch = self.meta_str("general.architecture").ok_or_else(|| self.err("no `general.architecture`"))?;
        if !ARCHITECTURES.contains(&arch) {
            return Err(
                self.err(format!("architecture `{arch}` is not supported (supported: {})", ARCHITECTURES.join(", ")))
            );
        }
        Ok(arch)
    }

    /// The decoder configuration from the metadata, with an optional `KIND:FACTOR` RoPE
    /// override.
    pub fn config(&self, rope_override: Option<&str>) -> Result<Config, ModelError> {
        let arch = self.architecture()?;
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.need_usize(&key("embedding_length"))?;
        let heads = self.need_usize(&key("attention.head_count"))?;
        let kv_heads = self.meta_u64(&key("attention.head_count_kv")).map_or(heads, |v| v as usize);
        let head_dim = self.meta_u64(&key("attention.key_length")).map_or(hidden / heads, |v| v as usize);
        let rotary = self.meta_u64(&key("rope.dimension_count")).map_or(head_dim, |v| v as usize);
        let context = self.need_usize(&key("context_length"))?;
        let vocab = match self.meta_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => self
                .meta("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(Vec::len)
                .ok_or_else(|| self.err(format!("no `{arch}.vocab_size` and no `tokenizer.ggml.tokens`")))?,
        };
        let theta = self.meta_f64(&key("rope.freq_base")).unwrap_or(10_000.0);
        let mut max_positions = context;
        let scaling = match rope_override {
            Some(s) => parse_override(s, context)?,
            None => self.rope_scaling(arch, head_dim, theta, &mut max_positions)?,
        };
        let eos = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|k| self.meta_u64(k))
            .map(|id| id as u32)
            .fold(Vec::new(), |mut acc, id| {
                if !acc.contains(&id) {
                    acc.push(id);
                }
                acc
            });
        Ok(Config {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.need_usize(&key("feed_forward_length"))?,
            num_layers: self.need_usize(&key("block_count"))?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rms_norm_eps: self.meta_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            qkv_bias: self.has_tensor("blk.0.attn_q.bias"),
            o_bias: self.has_tensor("blk.0.attn_output.bias"),
            tie_word_embeddings: !self.has_tensor("output.weight"),
            sliding_window: None,
            rope: RopeParams {
                head_dim,
                partial_rotary_factor: rotary as f64 / head_dim as f64,
                theta,
                max_position_embeddings: max_positions,
                scaling,
            },
            eos_token_ids: eos,
        })
    }

    /// The RoPE scaling of the metadata (`rope.scaling.*`), or Llama 3.1's scaling recognised
    /// from the `rope_freqs.weight` factors the converter stores for it.
    fn rope_scaling(
        &self,
        arch: &str,
        head_dim: usize,
        theta: f64,
        max_positions: &mut usize,
    ) -> Result<RopeScaling, ModelError> {
        let kind = self.meta_str(&format!("{arch}.rope.scaling.type")).unwrap_or("none");
        let factor = self.meta_f64(&format!("{arch}.rope.scaling.factor")).unwrap_or(1.0);
        if let Some(orig) = self.meta_u64(&format!("{arch}.rope.scaling.original_context_length")) {
            *max_positions = orig as usize;
        }
        let scaling = match kind {
            "none" | "" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor },
            "yarn" => RopeScaling::Yarn {
                factor,
                attention_factor: None,
                beta_fast: self.meta_f64(&format!("{arch}.rope.scaling.yarn_beta_fast")).unwrap_or(32.0),
                beta_slow: self.meta_f64(&format!("{arch}.rope.scaling.yarn_beta_slow")).unwrap_or(1.0),
            },
            other => return Err(self.err(format!("RoPE scaling `{other}` is not supported; pass --rope-scaling"))),
        };
        if !self.has_tensor("rope_freqs.weight") {
            return Ok(scaling);
        }
        // Llama 3.1/3.2: the converter stores per-frequency divisors instead of parameters.
        let freqs = self.tensor("rope_freqs.weight", &Device::Cpu)?.dequantize(&Device::Cpu)?.to_vec1::<f32>()?;
        for factor in [8.0, 32.0, 16.0, 4.0, 2.0] {
            let candidate = RopeScaling::Llama3 {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            };
            let params = RopeParams {
                head_dim,
                partial_rotary_factor: 1.0,
                theta,
                max_position_embeddings: 8192,
                scaling: candidate,
            };
            let plain = RopeParams { scaling: RopeScaling::None, ..params };
            let (scaled, _) = params.inv_freq(None);
            let (base, _) = plain.inv_freq(None);
            let matches = freqs.len() == base.len()
                && base.iter().zip(&scaled).zip(&freqs).all(|((b, s), f)| ((b / f) - s).abs() <= 1e-5 * s.abs());
            if matches {
                return Ok(candidate);
            }
        }
        Err(self.err(
            "`rope_freqs.weight` does not match Llama 3.1's scaling with factor 2, 4, 8, 16 or 32; pass --rope-scaling",
        ))
    }
}

/// The weights of a GGUF file, quantized as stored (or dequantized to f32 with
/// [`GgufWeights::dense`]).
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    device: Device,
    /// `(heads, kv_heads)` when the q/k rows are in llama.cpp's rotary order.
    permuted: Option<(usize, usize)>,
    /// Dequantize every matrix to f32 (dense, differentiable products).
    dense: bool,
}

impl<'a> GgufWeights<'a> {
    /// Weights of `file` for `config`, on `device`.
    pub fn new(file: &'a GgufFile, config: &Config, device: &Device) -> Result<Self, ModelError> {
        let permuted = (file.architecture()? == "llama").then_some((config.num_heads, config.num_kv_heads));
        Ok(Self { file, device: device.clone(), permuted, dense: false })
    }

    /// The same weights dequantized to f32 dense matrices at load (training through the
    /// products; memory four bytes per weight).
    #[must_use]
    pub fn dense(mut self) -> Self {
        self.dense = true;
        self
    }

    fn dequantized(&self, w: &QTensor) -> candle_core::Result<Tensor> {
        w.dequantize(&self.device)?.to_dtype(DType::F32)
    }

    fn name(layer: usize, part: Part) -> String {
        let short = match part {
            Part::Q => "attn_q",
            Part::K => "attn_k",
            Part::V => "attn_v",
            Part::O => "attn_output",
            Part::Gate => "ffn_gate",
            Part::Up => "ffn_up",
            Part::Down => "ffn_down",
            Part::InputNorm => "attn_norm",
            Part::PostNorm => "ffn_norm",
        };
        format!("blk.{layer}.{short}")
    }

    /// Tensor `name`, checked against `shape` (`[rows, cols]` or `[len]`).
    fn get(&self, name: &str, shape: &[usize]) -> candle_core::Result<QTensor> {
        let t = self.file.tensor(name, &self.device)?;
        if t.shape().dims() != shape {
            candle_core::bail!(
                "{}: tensor `{name}` has shape {:?}, expected {shape:?}",
                self.file.path,
                t.shape().dims()
            );
        }
        Ok(t)
    }

    /// Undoes the converter's row permutation of a q/k weight or bias with `heads` heads.
    fn unpermute(&self, t: QTensor, heads: usize) -> candle_core::Result<QTensor> {
        let rows = t.shape().dims()[0];
        let head_dim = rows / heads;
        let data = t.data()?;
        let row_bytes = data.len() / rows;
        let mut out = vec![0u8; data.len()];
        let half = head_dim / 2;
        for h in 0..heads {
            for i in 0..half {
                for side in 0..2 {
                    // transformers' row h·d + side·d/2 + i is llama.cpp's row h·d + 2i + side.
                    let dst = h * head_dim + side * half + i;
                    let src = h * head_dim + 2 * i + side;
                    out[dst * row_bytes..(dst + 1) * row_bytes]
                        .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
                }
            }
        }
        let storage = QStorage::from_data(Cow::Owned(out), &self.device, t.dtype())?;
        QTensor::new(storage, t.shape().clone())
    }

    /// The matrix for longctx's own kernels when its type has them (Q4_0, Q4_1, Q8_0 on the CPU).
    fn packed(&self, w: &QTensor, rows: usize, cols: usize) -> candle_core::Result<Option<Arc<QuantMatrix>>> {
        let kind = match w.dtype() {
            GgmlDType::Q4_0 => BlockKind::Q4_0,
            GgmlDType::Q4_1 => BlockKind::Q4_1,
            GgmlDType::Q8_0 => BlockKind::Q8_0,
            _ => return Ok(None),
        };
        if !self.device.is_cpu() || !cols.is_multiple_of(32) {
            return Ok(None);
        }
        Ok(Some(Arc::new(QuantMatrix::from_ggml(kind, rows, cols, &w.data()?)?)))
    }

    fn f32_vector(&self, name: &str, len: usize) -> candle_core::Result<Tensor> {
        self.get(name, &[len])?.dequantize(&self.device)?.to_dtype(DType::F32)
    }
}

impl WeightSource for GgufWeights<'_> {
    fn proj(&self, layer: usize, part: Part, in_dim: usize, out_dim: usize, bias: bool) -> candle_core::Result<Proj> {
        let name = Self::name(layer, part);
        let mut w = self.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let mut b = if bias { Some(self.get(&format!("{name}.bias"), &[out_dim])?) } else { None };
        let heads = match (part, self.permuted) {
            (Part::Q, Some((h, _))) => Some(h),
            (Part::K, Some((_, kv))) => Some(kv),
            _ => None,
        };
        if let Some(heads) = heads {
            w = self.unpermute(w, heads)?;
            b = b.map(|b| self.unpermute(b, heads)).transpose()?;
        }
        let b = b.map(|b| b.dequantize(&self.device)).transpose()?;
        if self.dense {
            return Ok(Proj::Dense(candle_nn::Linear::new(self.dequantized(&w)?, b)));
        }
        Ok(match self.packed(&w, out_dim, in_dim)? {
            Some(m) => Proj::Packed(QuantMatMul::new(m), b),
            None => Proj::Quant(QMatMul::from_qtensor(w)?, b),
        })
    }

    fn norm(&self, layer: usize, part: Part, size: usize) -> candle_core::Result<Tensor> {
        self.f32_vector(&format!("{}.weight", Self::name(layer, part)), size)
    }

    fn final_norm(&self, size: usize) -> candle_core::Result<Tensor> {
        self.f32_vector("output_norm.weight", size)
    }

    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embed> {
        let w = self.get("token_embd.weight", &[vocab, hidden])?;
        if self.dense {
            return Ok(Embed::Dense(candle_nn::Embedding::new(self.dequantized(&w)?, hidden)));
        }
        Ok(match self.packed(&w, vocab, hidden)? {
            Some(m) => Embed::Packed(m),
            None => Embed::Quant(QMatMul::from_qtensor(w)?),
        })
    }

    fn lm_head(&self, hidden: usize, vocab: usize, tied: bool, embed: &Embed) -> candle_core::Result<Proj> {
        match (tied, embed) {
            // One copy of the matrix serves the lookup and the LM head.
            (true, Embed::Packed(m)) => return Ok(Proj::Packed(QuantMatMul::new(Arc::clone(m)), None)),
            (true, Embed::Dense(e)) => return Ok(Proj::Dense(candle_nn::Linear::new(e.embeddings().clone(), None))),
            _ => {}
        }
        let name = if tied { "token_embd.weight" } else { "output.weight" };
        let w = self.get(name, &[vocab, hidden])?;
        if self.dense {
            return Ok(Proj::Dense(candle_nn::Linear::new(self.dequantized(&w)?, None)));
        }
        Ok(match self.packed(&w, vocab, hidden)? {
            Some(m) => Proj::Packed(QuantMatMul::new(m), None),
            None => Proj::Quant(QMatMul::from_qtensor(w)?, None),
        })
    }
}

/// The pre-tokenizer of a byte-level BPE vocabulary, by `tokenizer.ggml.pre` (as llama.cpp's
/// `llama-vocab.cpp` and the models' own `tokenizer.json` define them).
fn pre_tokenizer(pre: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    use serde_json::json;
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let none = serde_json::Value::Null;
    Some(match pre {
        "gpt2" | "default" => (none, byte_level(true)),
        "smollm" => (
            none,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "llama-bpe" | "llama3" => {
            (none, json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]}))
        }
        "qwen2" => {
            (json!({"type": "NFC"}), json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]}))
        }
        _ => return None,
    })
}

/// The tokenizer of the metadata, as a `tokenizers` pipeline: byte-level BPE (`gpt2`) with the
/// pre-tokenizer named by `tokenizer.ggml.pre`, control and user-defined tokens as added
/// tokens, BOS prepended when `tokenizer.ggml.add_bos_token` says so.
pub fn gguf_tokenizer(file: &GgufFile) -> Result<HfTokenizer, ModelError> {
    use serde_json::json;
    let model = file.meta_str("tokenizer.ggml.model").ok_or_else(|| file.err("no tokenizer in the metadata"))?;
    if model != "gpt2" {
        return Err(file.err(format!(
            "tokenizer type `{model}` (sentencepiece) is not rebuilt from GGUF metadata yet; put the model's tokenizer.json next to the GGUF file"
        )));
    }
    let pre = file.meta_str("tokenizer.ggml.pre").unwrap_or("default");
    let (normalizer, pre_tokenizer) = pre_tokenizer(pre).ok_or_else(|| {
        file.err(format!("pre-tokenizer `{pre}` is not known; put the model's tokenizer.json next to the GGUF file"))
    })?;
    let strings = |key: &str| -> Result<Vec<String>, ModelError> {
        let v = file.meta(key).and_then(|v| v.to_vec().ok()).ok_or_else(|| file.err(format!("no `{key}`")))?;
        v.iter().map(|s| s.to_string().cloned().map_err(|e| file.err(format!("`{key}`: {e}")))).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = file
        .meta("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| t.to_i32().map_or(1, i64::from)).collect())
        .unwrap_or_default();
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    // llama.cpp's token types: 3 = control, 4 = user-defined.
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(i, t)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": *t == 4, "special": *t == 3})
        })
        .collect();
    let bos = file.meta_u64("tokenizer.ggml.bos_token_id").map(|id| id as usize);
    let post = match (file.meta_bool("tokenizer.ggml.add_bos_token"), bos) {
        (Some(true), Some(bos)) => json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tokens[bos].clone(): {"id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]}}}),
        _ => serde_json::Value::Null,
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": matches!(pre, "llama-bpe" | "llama3"), "vocab": vocab, "merges": merges},
    });
    let inner: tokenizers::Tokenizer =
        spec.to_string().parse().map_err(|e| file.err(format!("building the tokenizer from its metadata: {e}")))?;
    Ok(HfTokenizer::from_tokenizer(inner))
}

/// The tokenizer and chat template of a GGUF file, without its weights (for counting tokens
/// on the client side of an HTTP backend).
pub fn load_gguf_tokenizer(path: &Path) -> Result<(HfTokenizer, Option<ChatTemplate>), ModelError> {
    let file = GgufFile::open(path)?;
    let beside = path.with_file_name("tokenizer.json");
    let tokenizer = match gguf_tokenizer(&file) {
        Ok(t) => t,
        Err(_) if beside.is_file() => HfTokenizer::from_file(&beside)?,
        Err(e) => return Err(e),
    };
    Ok((tokenizer, chat_template(&file)?))
}

/// The chat template of the metadata, with the BOS and EOS token texts.
fn chat_template(file: &GgufFile) -> Result<Option<ChatTemplate>, ModelError> {
    let Some(source) = file.meta_str("tokenizer.chat_template") else { return Ok(None) };
    let tokens = file.meta("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok());
    let text = |key: &str| -> String {
        let id = file.meta_u64(key);
        tokens
            .and_then(|t| id.and_then(|id| t.get(id as usize)))
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default()
    };
    ChatTemplate::new(source, &text("tokenizer.ggml.bos_token_id"), &text("tokenizer.ggml.eos_token_id"))
        .map(Some)
        .map_err(|e| file.err(format!("tokenizer.chat_template: {e}")))
}

/// Loads a GGUF model on `device` (computing in f32 over the quantized weights), with an
/// optional RoPE override `KIND:FACTOR`. The tokenizer comes from the metadata; when the
/// metadata's tokenizer cannot be rebuilt, a `tokenizer.json` beside the file is used.
pub fn load_gguf(path: &Path, device: &Device, rope_override: Option<&str>) -> Result<Loaded, ModelError> {
    load_gguf_with(path, device, rope_override, false)
}

/// [`load_gguf`], with every matrix dequantized to f32 when `dense` (to train through it).
pub fn load_gguf_with(
    path: &Path,
    device: &Device,
    rope_override: Option<&str>,
    dense: bool,
) -> Result<Loaded, ModelError> {
    let file = GgufFile::open(path)?;
    let config = file.config(rope_override)?;
    let mut weights = GgufWeights::new(&file, &config, device)?;
    if dense {
        weights = weights.dense();
    }
    let model = Llama::from_source(config, &weights)?;
    let beside = path.with_file_name("tokenizer.json");
    let tokenizer = match gguf_tokenizer(&file) {
        Ok(t) => t,
        Err(_) if beside.is_file() => HfTokenizer::from_file(&beside)?,
        Err(e) => return Err(e),
    };
    let weight_bytes = fs_err::metadata(path)?.len();
    Ok(Loaded { model, tokenizer, chat_template: chat_template(&file)?, weight_bytes })
}
