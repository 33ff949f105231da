//! The roles retrieval-augmented prompting needs: embedders, rerankers and a chat model to
//! rerank with. Implementations live in `longctx-context` (native encoders, OpenAI-compatible
//! APIs) and later in the backends; strategies only see these traits.

use serde::{Deserialize, Serialize};

use crate::ChatMessage;

/// A failure of a model call (an embedder, a reranker, a chat endpoint), as text that names
/// what failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallError(pub String);

/// What a call consumed, for cost accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens billed.
    pub prompt_tokens: u64,
    /// Output (completion) tokens billed.
    pub completion_tokens: u64,
    /// Requests made (retries included).
    pub requests: u64,
    /// Cost in US dollars at the configured prices (0 for local models).
    pub cost_usd: f64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.requests += o.requests;
        self.cost_usd += o.cost_usd;
    }
}

/// Vectors of a batch of texts, in the order given, with what computing them cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    /// One vector per text, L2-normalized.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens and cost.
    pub usage: Usage,
}

/// Turns texts into L2-normalized vectors whose inner product is their similarity.
pub trait Embedder: Send + Sync {
    /// Embeds `texts` (order preserved).
    fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError>;
}

/// Relevance scores of candidates to a query, with what computing them cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// One score per candidate (higher is more relevant).
    pub scores: Vec<f32>,
    /// Tokens and cost.
    pub usage: Usage,
}

/// Scores candidate passages against a query.
pub trait Reranker: Send + Sync {
    /// One score per candidate, in the order given.
    fn rerank(&self, query: &str, candidates: &[&str]) -> Result<Scores, CallError>;
}

/// A chat model's reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatReply {
    /// The generated text.
    pub text: String,
    /// Tokens and cost.
    pub usage: Usage,
}

/// A chat model, as the LLM reranker uses one (greedy, bounded length).
pub trait ChatModel: Send + Sync {
    /// Answers `messages` with at most `max_tokens` tokens.
    fn chat(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<ChatReply, CallError>;
}
