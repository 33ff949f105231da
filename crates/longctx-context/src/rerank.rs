//! Rerankers for advanced RAG: an LLM judge through any chat model (e.g. a GPT-4-class
//! model behind an OpenAI-compatible endpoint), and a local cross-encoder (a BERT-style
//! sequence classifier).

use std::fmt::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::Device;
use longctx_core::{CallError, ChatMessage, ChatModel, Reranker, Scores, Usage};
use longctx_models::encoder::{Encoder, EncoderInput};
use tokenizers::{PaddingParams, TruncationParams, TruncationStrategy};

use crate::Error;

/// Asks a chat model for a 0–10 relevance score of each candidate, `batch` candidates per
/// request; tokens and cost of every request are added up.
pub struct LlmReranker {
    model: Arc<dyn ChatModel>,
    /// Candidates per request.
    pub batch: usize,
    /// Longest passage text sent (characters; longer ones are cut).
    pub max_passage_chars: usize,
}

const SYSTEM: &str = "You judge how relevant passages are to a query. You answer only with scores.";

impl LlmReranker {
    /// A reranker over `model`.
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model, batch: 20, max_passage_chars: 2000 }
    }

    /// The user message for one batch of candidates.
    pub fn prompt(&self, query: &str, candidates: &[&str]) -> String {
        let mut p = format!(
            "Query: {query}\n\nRate how relevant each passage below is to the query, from 0 (irrelevant) to 10 \
             (answers it). Reply with exactly one line per passage, in the form `[number] score`, and nothing else.\n"
        );
        for (i, c) in candidates.iter().enumerate() {
            let text: String = c.chars().take(self.max_passage_chars).collect();
            let _ = write!(p, "\n[{i}] {}\n", text.replace('\n', " "));
        }
        p
    }

    /// Scores from a reply: `[i] score` lines (also `i: score`); a candidate the reply does not
    /// score gets 0 and is reported in the log.
    pub fn parse(reply: &str, n: usize) -> Vec<f32> {
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r"(?m)^\s*\[?(\d+)\]?\s*[:=\-]?\s*(-?\d+(?:\.\d+)?)").expect("valid regex")
        });
        let mut scores = vec![None; n];
        for cap in re.captures_iter(reply) {
            if let (Ok(i), Ok(s)) = (cap[1].parse::<usize>(), cap[2].parse::<f32>()) {
                if i < n && scores[i].is_none() {
                    scores[i] = Some(s);
                }
            }
        }
        let missing = scores.iter().filter(|s| s.is_none()).count();
        if missing > 0 {
            tracing::warn!("the reranker's reply scores {} of {n} passages; the others get 0", n - missing);
        }
        scores.into_iter().map(|s| s.unwrap_or(0.0)).collect()
    }
}

impl Reranker for LlmReranker {
    fn rerank(&self, query: &str, candidates: &[&str]) -> Result<Scores, CallError> {
        let mut out = Scores { scores: Vec::with_capacity(candidates.len()), usage: Usage::default() };
        for batch in candidates.chunks(self.batch.max(1)) {
            let messages = [ChatMessage::new("system", SYSTEM), ChatMessage::new("user", self.prompt(query, batch))];
            let reply = self.model.chat(&messages, 8 * batch.len() + 16)?;
            out.scores.extend(Self::parse(&reply.text, batch.len()));
            out.usage += reply.usage;
        }
        Ok(out)
    }
}

/// A cross-encoder: the query and a passage go through a sequence classifier together
/// (pairs truncated longest-first to `max_length` tokens, as sentence-transformers'
/// CrossEncoder does); the score is the first logit (the sigmoid of it is monotonic).
pub struct CrossEncoder {
    encoder: Encoder,
    tokenizer: tokenizers::Tokenizer,
    batch: usize,
}

impl CrossEncoder {
    /// Loads a cross-encoder directory (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let encoder = Encoder::load(dir, &Device::Cpu)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::Config(format!("{}: {e}", tok_path.display())))?;
        let max_length = encoder.config().max_tokens().min(512);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| Error::Config(format!("{}: {e}", tok_path.display())))?;
        tokenizer.with_padding(None::<PaddingParams>);
        Ok(Self { encoder, tokenizer, batch: 32 })
    }

    /// Token ids and segment ids of a (query, passage) pair.
    pub fn encode_pair(&self, query: &str, passage: &str) -> Result<EncoderInput, Error> {
        let enc =
            self.tokenizer.encode((query, passage), true).map_err(|e| Error::Config(format!("tokenizer: {e}")))?;
        Ok(EncoderInput { ids: enc.get_ids().to_vec(), type_ids: enc.get_type_ids().to_vec() })
    }

    /// The first logit of each pair.
    pub fn logits(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, Error> {
        let mut out = Vec::with_capacity(passages.len());
        for batch in passages.chunks(self.batch) {
            let inputs: Vec<EncoderInput> =
                batch.iter().map(|p| self.encode_pair(query, p)).collect::<Result<_, _>>()?;
            let logits: Vec<Vec<f32>> =
                self.encoder.sequence_logits(&inputs)?.to_vec2().map_err(longctx_models::ModelError::from)?;
            out.extend(logits.into_iter().map(|l| l[0]));
        }
        Ok(out)
    }
}

impl Reranker for CrossEncoder {
    fn rerank(&self, query: &str, candidates: &[&str]) -> Result<Scores, CallError> {
        let scores = self.logits(query, candidates).map_err(|e| CallError(e.to_string()))?;
        Ok(Scores { scores, usage: Usage::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scores_and_tolerates_chatter() {
        let reply = "Sure.\n[0] 7\n[2] 9.5\n1: 3\n[0] 1\n[9] 10";
        assert_eq!(LlmReranker::parse(reply, 3), [7.0, 3.0, 9.5]);
        assert_eq!(LlmReranker::parse("no scores", 2), [0.0, 0.0]);
    }
}
