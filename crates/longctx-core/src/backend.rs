//! The generation role: a request (chat messages or raw text, generation limits) in, a
//! completion (text, token counts, latency, cost) out. Implementations: the native candle
//! runtime and OpenAI-compatible HTTP servers (`longctx-backends`).

use serde::{Deserialize, Serialize};

use crate::{ChatMessage, Usage};

/// What the model is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInput {
    /// Messages wrapped in the model's chat template (`/v1/chat/completions`).
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized with the model's special tokens (`/v1/completions`); LongBench uses
    /// it for the few-shot and code datasets.
    Text(String),
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The prompt.
    pub prompt: PromptInput,
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Generation ends before the first of these strings.
    #[serde(default)]
    pub stop: Vec<String>,
    /// 0 is greedy decoding.
    #[serde(default)]
    pub temperature: f64,
    /// Seed for sampling.
    #[serde(default)]
    pub seed: u64,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// A backend's answer to a [`GenerationRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Tokens of the prompt the model received (chat template included).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Seconds from the request to the answer (retries included).
    pub latency_s: f64,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Requests made and the cost at the configured prices.
    pub usage: Usage,
}

/// Why a backend did not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The prompt and the requested new tokens do not fit the model's window; backends never
    /// truncate on their own.
    #[error("the prompt has {prompt_tokens} tokens; with {max_new_tokens} new tokens it exceeds the model's window of {window}")]
    PromptTooLong {
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Requested new tokens.
        max_new_tokens: usize,
        /// The window.
        window: usize,
    },
    /// The request itself is wrong (HTTP 4xx, an empty prompt, a chat model without a
    /// template).
    #[error("{0}")]
    Rejected(String),
    /// The caller stopped the generation (its client went away).
    #[error("cancelled after {completion_tokens} tokens")]
    Cancelled {
        /// Tokens generated before the stop.
        completion_tokens: usize,
    },
    /// A failure that retries did not cure (HTTP 5xx, timeouts, dropped connections) or a
    /// runtime error.
    #[error("{0}")]
    Failed(String),
}

/// A text generator. `generate` takes `&self` so that an HTTP backend can serve several
/// requests at once from worker threads; a backend over one local model serializes them.
pub trait Backend: Send + Sync {
    /// A short description for logs and manifests (e.g. `native:SmolLM2-135M.gguf`).
    fn describe(&self) -> String;
    /// Answers one request.
    fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError>;
    /// How many requests are worth keeping in flight (1 for a local model).
    fn parallelism(&self) -> usize {
        1
    }
}
