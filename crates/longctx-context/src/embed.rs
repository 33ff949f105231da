//! Sentence embedders on the native runtime: a sentence-transformers model directory (BERT
//! encoder, mean or CLS pooling, L2 normalization), e.g. all-MiniLM-L6-v2.

use std::path::Path;

use candle_core::Device;
use longctx_core::{CallError, Embedder, Embeddings, Usage};
use longctx_models::encoder::{Encoder, EncoderInput, Precision};
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

    /// Runs the encoder's dense layers in `precision` (`bf16`: fast on CPUs with AMX, vectors
    /// within about 1e-3 of f32's; see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self, Error> {
        self.encoder.set_precision(precision)?;
        Ok(self)
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

/// What the cache keeps of one text: its vector and its share of the call that computed it.
#[derive(Debug, Clone)]
struct Cached {
    vector: Vec<f32>,
    usage: Usage,
}

/// An [`Embedder`] decorator that remembers vectors by text, so that variants of one run
/// (RAG at several k, with and without a reranker) embed each chunk once.
///
/// A cached text reports the usage it cost when it was computed (its share of that call, by
/// length), so each variant's usage is what it would cost on its own; the run's actual
/// spend on embeddings can be lower. The cache is emptied when it holds `capacity` texts.
pub struct CachedEmbedder {
    inner: std::sync::Arc<dyn Embedder>,
    cache: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    capacity: usize,
}

impl CachedEmbedder {
    /// A cache of at most `capacity` texts over `inner`.
    pub fn new(inner: std::sync::Arc<dyn Embedder>, capacity: usize) -> Self {
        Self { inner, cache: std::sync::Mutex::default(), capacity: capacity.max(1) }
    }

    /// Texts in the cache.
    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn share(usage: &Usage, part: usize, whole: usize) -> Usage {
    let f = if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    Usage {
        prompt_tokens: (usage.prompt_tokens as f64 * f).round() as u64,
        completion_tokens: (usage.completion_tokens as f64 * f).round() as u64,
        requests: 0,
        cost_usd: usage.cost_usd * f,
    }
}

impl Embedder for CachedEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError> {
        let lock = || self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut missing: Vec<&str> = {
            let cache = lock();
            texts.iter().copied().filter(|t| !cache.contains_key(*t)).collect()
        };
        missing.sort_unstable();
        missing.dedup();
        let mut out = Embeddings::default();
        let mut fresh: std::collections::HashMap<&str, Cached> = std::collections::HashMap::new();
        if !missing.is_empty() {
            let computed = self.inner.embed(&missing)?;
            if computed.vectors.len() != missing.len() {
                return Err(CallError(format!(
                    "the embedder returned {} vectors for {} texts",
                    computed.vectors.len(),
                    missing.len()
                )));
            }
            let whole: usize = missing.iter().map(|t| t.len()).sum();
            out.usage.requests = computed.usage.requests;
            for (t, v) in missing.iter().zip(computed.vectors) {
                fresh.insert(t, Cached { vector: v, usage: share(&computed.usage, t.len(), whole) });
            }
        }
        let mut cache = lock();
        for t in texts {
            let c = match fresh.get(t) {
                Some(c) => c.clone(),
                None => cache.get(*t).cloned().ok_or_else(|| CallError("embedding cache lost a text".into()))?,
            };
            let requests = out.usage.requests;
            out.usage += c.usage;
            out.usage.requests = requests;
            out.vectors.push(c.vector);
        }
        if cache.len() + fresh.len() > self.capacity {
            cache.clear();
        }
        for (t, c) in fresh {
            cache.insert(t.to_string(), c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Embeds a text as its length; counts the texts it is asked for.
    struct Len(AtomicUsize);
    impl Embedder for Len {
        fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            let tokens: usize = texts.iter().map(|t| t.len()).sum();
            Ok(Embeddings {
                vectors: texts.iter().map(|t| vec![t.len() as f32]).collect(),
                usage: Usage {
                    prompt_tokens: tokens as u64,
                    completion_tokens: 0,
                    requests: 1,
                    cost_usd: tokens as f64,
                },
            })
        }
    }

    #[test]
    fn each_text_is_embedded_once_and_reports_its_own_cost() {
        let inner = Arc::new(Len(AtomicUsize::new(0)));
        let cached = CachedEmbedder::new(inner.clone(), 100);
        let a = cached.embed(&["aa", "b", "aa"]).unwrap();
        assert_eq!(a.vectors, vec![vec![2.0], vec![1.0], vec![2.0]]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        assert_eq!((a.usage.requests, a.usage.cost_usd), (1, 5.0));
        let b = cached.embed(&["b", "ccc"]).unwrap();
        assert_eq!(b.vectors, vec![vec![1.0], vec![3.0]]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
        assert_eq!((b.usage.requests, b.usage.cost_usd, b.usage.prompt_tokens), (1, 4.0, 4));
        let c = cached.embed(&["ccc"]).unwrap();
        assert_eq!((c.usage.requests, c.usage.cost_usd), (0, 3.0));
        assert_eq!(cached.len(), 3);
    }
}
