//! Sentence embedders on the native runtime: a sentence-transformers model directory (BERT
//! encoder, mean or CLS pooling, L2 normalization), e.g. all-MiniLM-L6-v2.

use std::path::Path;

use candle_core::Device;
use longctx_core::{CallError, Embedder, Embeddings, Usage};
use longctx_models::encoder::{Encoder, EncoderInput};
use tokenizers::{PaddingParams, TruncationParams};

use crate::Error;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over all tokens (special tokens included), sentence-transformers' default.
    Mean,
    /// The first token's vector.
    Cls,
}

/// A sentence-transformers model on candle.
pub struct SentenceEmbedder {
    encoder: Encoder,
    tokenizer: tokenizers::Tokenizer,
    max_seq_length: usize,
    pooling: Pooling,
    batch_size: usize,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).map(Some).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config(format!("{}: {e}", path.display()))),
    }
}

impl SentenceEmbedder {
    /// Loads a sentence-transformers directory: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, and when present `sentence_bert_config.json` (max_seq_length) and
    /// `1_Pooling/config.json`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let encoder = Encoder::load(dir, &Device::Cpu)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::Config(format!("{}: {e}", tok_path.display())))?;
        let max_seq_length = read_json(&dir.join("sentence_bert_config.json"))?
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(encoder.config().max_tokens(), |n| n as usize)
            .min(encoder.config().max_tokens());
        let pooling = match read_json(&dir.join("1_Pooling/config.json"))? {
            None => Pooling::Mean,
            Some(v) if v["pooling_mode_mean_tokens"].as_bool() == Some(true) => Pooling::Mean,
            Some(v) if v["pooling_mode_cls_token"].as_bool() == Some(true) => Pooling::Cls,
            Some(_) => {
                return Err(Error::Config(format!(
                    "{}: only mean and CLS pooling are supported",
                    dir.join("1_Pooling/config.json").display()
                )))
            }
        };
        // sentence-transformers truncates to max_seq_length (special tokens included) and pads
        // per batch; packing needs no padding.
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| Error::Config(format!("{}: {e}", tok_path.display())))?;
        tokenizer.with_padding(None::<PaddingParams>);
        Ok(Self { encoder, tokenizer, max_seq_length, pooling, batch_size: 32 })
    }

    /// Texts per forward pass (default 32).
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Longest input in tokens, special tokens included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// Token ids the encoder sees for `text` (after truncation, with special tokens).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Config(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// L2-normalized vectors of `texts`, in order.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let inputs =
                batch.iter().map(|t| self.token_ids(t).map(EncoderInput::from)).collect::<Result<Vec<_>, _>>()?;
            match self.pooling {
                Pooling::Mean => out.extend(self.encoder.mean_pooled(&inputs, true)?),
                Pooling::Cls => {
                    let hidden = self
                        .encoder
                        .hidden_states(&inputs)?
                        .to_vec2::<f32>()
                        .map_err(longctx_models::ModelError::from)?;
                    let mut at = 0;
                    for s in &inputs {
                        let mut v = hidden[at].clone();
                        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                        for a in &mut v {
                            *a /= norm;
                        }
                        out.push(v);
                        at += s.ids.len();
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Embedder for SentenceEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError> {
        let vectors = self.embed_texts(texts).map_err(|e| CallError(e.to_string()))?;
        Ok(Embeddings { vectors, usage: Usage::default() })
    }
}
