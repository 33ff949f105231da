//! OpenAI-compatible HTTP clients: the generation backend (`/v1/chat/completions` and
//! `/v1/completions`, as vLLM, llama.cpp's server, `longctx serve` and hosted APIs serve
//! them), embeddings (`/v1/embeddings`, e.g. text-embedding-3-small) and a chat model for the
//! LLM reranker; with retries with exponential backoff on 429/5xx/timeouts/dropped
//! connections, a per-request timeout, and usage and cost.
//!
//! The API key is read from the environment variable the configuration names; it is sent
//! in the `Authorization` header and never logged or stored elsewhere.

use std::time::Duration;

use std::time::Instant;

use longctx_core::{
    Backend, BackendError, CallError, ChatMessage, ChatModel, ChatReply, Completion, Embedder, Embeddings,
    FinishReason, GenerationRequest, PromptInput, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::Error;

/// Where and how to call an OpenAI-compatible endpoint, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    /// Base URL, e.g. `https://api.openai.com` or `http://127.0.0.1:8000` (a trailing `/v1`
    /// is accepted).
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key (none: no `Authorization` header).
    pub api_key_env: Option<String>,
    /// Seconds before a request times out.
    pub timeout_s: f64,
    /// Retries after the first attempt (429, 5xx, timeouts and connection errors).
    pub max_retries: u32,
    /// Delay before the first retry, doubled after each (seconds).
    pub backoff_s: f64,
    /// US dollars per million input tokens.
    pub usd_per_m_input: f64,
    /// US dollars per million output tokens.
    pub usd_per_m_output: f64,
    /// US dollars per request (e.g. a reranker call priced per call).
    pub usd_per_request: f64,
    /// Texts per embeddings request.
    pub batch_size: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com".into(),
            model: String::new(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            timeout_s: 60.0,
            max_retries: 4,
            backoff_s: 0.5,
            usd_per_m_input: 0.0,
            usd_per_m_output: 0.0,
            usd_per_request: 0.0,
            batch_size: 256,
        }
    }
}

/// A client of one endpoint.
pub struct OpenAiClient {
    config: EndpointConfig,
    agent: ureq::Agent,
    api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("OpenAiClient").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client; fails when the named API-key variable is not set.
    pub fn new(config: EndpointConfig) -> Result<Self, Error> {
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Config(format!("the API key variable {var} is not set (endpoint {})", config.base_url))
            })?),
            None => None,
        };
        if config.model.is_empty() {
            return Err(Error::Config(format!("no model name for the endpoint {}", config.base_url)));
        }
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs_f64(config.timeout_s.max(0.001))).build();
        Ok(Self { config, agent, api_key })
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/{path}")
    }

    /// Cost of the given token counts and requests at the configured prices.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64, requests: u64) -> f64 {
        (prompt_tokens as f64 * self.config.usd_per_m_input + completion_tokens as f64 * self.config.usd_per_m_output)
            / 1e6
            + requests as f64 * self.config.usd_per_request
    }

    /// POSTs `body` to `/v1/{path}`, retrying transient failures; returns the JSON answer and
    /// the number of requests made.
    pub fn post(&self, path: &str, body: &Value) -> Result<(Value, u64), CallError> {
        let url = self.url(path);
        let mut delay = self.config.backoff_s;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.post(&url).set("Content-Type", "application/json");
            if let Some(key) = &self.api_key {
                req = req.set("Authorization", &format!("Bearer {key}"));
            }
            let failure = match req.send_string(&body.to_string()) {
                // A connection dropped in the middle of the body is as transient as one
                // dropped before the headers.
                Ok(resp) => match resp.into_string() {
                    Ok(text) => {
                        return serde_json::from_str(&text)
                            .map(|v| (v, u64::from(attempt)))
                            .map_err(|e| CallError(format!("{url}: the response is not JSON ({e}): {text:.200}")));
                    }
                    Err(e) => format!("{url}: reading the response: {e}"),
                },
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let msg = format!("{url}: HTTP {code}: {text:.300}");
                    if code != 429 && code < 500 {
                        return Err(CallError(format!("{REJECTED}{msg}")));
                    }
                    msg
                }
                Err(ureq::Error::Transport(t)) => t.to_string(),
            };
            if attempt > self.config.max_retries {
                return Err(CallError(format!("{failure} (gave up after {attempt} attempts)")));
            }
            tracing::warn!("{failure}; retrying in {delay:.2} s");
            std::thread::sleep(Duration::from_secs_f64(delay));
            delay *= 2.0;
        }
    }
}

/// Prefix of the messages of failures that retrying cannot cure (HTTP 4xx other than 429).
const REJECTED: &str = "rejected: ";

fn usage_of(v: &Value) -> (u64, u64) {
    let u = &v["usage"];
    let prompt = u["prompt_tokens"].as_u64().or_else(|| u["total_tokens"].as_u64()).unwrap_or(0);
    (prompt, u["completion_tokens"].as_u64().unwrap_or(0))
}

/// Embeddings from `/v1/embeddings`, batched, L2-normalized.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: OpenAiClient,
}

impl OpenAiEmbedder {
    /// An embedder over the endpoint.
    pub fn new(config: EndpointConfig) -> Result<Self, Error> {
        Ok(Self { client: OpenAiClient::new(config)? })
    }
}

impl Embedder for OpenAiEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError> {
        let mut out = Embeddings::default();
        for batch in texts.chunks(self.client.config.batch_size.max(1)) {
            let body = json!({ "model": self.client.config.model, "input": batch, "encoding_format": "float" });
            let (v, requests) = self.client.post("embeddings", &body)?;
            let data = v["data"].as_array().ok_or_else(|| CallError("embeddings: no `data` in the response".into()))?;
            if data.len() != batch.len() {
                return Err(CallError(format!("embeddings: {} vectors for {} texts", data.len(), batch.len())));
            }
            let mut vectors: Vec<(usize, Vec<f32>)> = Vec::with_capacity(data.len());
            for (i, d) in data.iter().enumerate() {
                let index = d["index"].as_u64().map_or(i, |x| x as usize);
                let mut v: Vec<f32> = d["embedding"]
                    .as_array()
                    .ok_or_else(|| CallError(format!("embeddings: item {i} has no `embedding` list")))?
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                    .collect();
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                for a in &mut v {
                    *a /= norm;
                }
                vectors.push((index, v));
            }
            vectors.sort_by_key(|(i, _)| *i);
            out.vectors.extend(vectors.into_iter().map(|(_, v)| v));
            let (prompt, _) = usage_of(&v);
            out.usage += Usage {
                prompt_tokens: prompt,
                completion_tokens: 0,
                requests,
                cost_usd: self.client.cost(prompt, 0, requests),
            };
        }
        Ok(out)
    }
}

/// A chat model behind `/v1/chat/completions` (greedy: temperature 0).
#[derive(Debug)]
pub struct OpenAiChat {
    client: OpenAiClient,
}

impl OpenAiChat {
    /// A chat model over the endpoint.
    pub fn new(config: EndpointConfig) -> Result<Self, Error> {
        Ok(Self { client: OpenAiClient::new(config)? })
    }
}

impl ChatModel for OpenAiChat {
    fn chat(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<ChatReply, CallError> {
        let body = json!({
            "model": self.client.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        });
        let (v, requests) = self.client.post("chat/completions", &body)?;
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| CallError("chat/completions: no choices[0].message.content in the response".into()))?
            .to_string();
        let (prompt, completion) = usage_of(&v);
        Ok(ChatReply {
            text,
            usage: Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                requests,
                cost_usd: self.client.cost(prompt, completion, requests),
            },
        })
    }
}

/// Which endpoint a generation request goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Chat prompts to `/v1/chat/completions`, raw-text prompts to `/v1/completions` (what
    /// LongBench does: few-shot and code datasets skip the chat template).
    #[default]
    Auto,
    /// Everything to `/v1/chat/completions` (hosted chat-only APIs); raw text is sent as one
    /// user message.
    Chat,
    /// Everything to `/v1/completions`; chat prompts must be rendered by the caller.
    Completions,
}

/// A generation backend over an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiBackend {
    client: OpenAiClient,
    endpoint: Endpoint,
    parallelism: usize,
}

impl OpenAiBackend {
    /// A backend over the endpoint keeping up to `parallelism` requests in flight.
    pub fn new(config: EndpointConfig, endpoint: Endpoint, parallelism: usize) -> Result<Self, Error> {
        Ok(Self { client: OpenAiClient::new(config)?, endpoint, parallelism: parallelism.max(1) })
    }
}

fn backend_error(e: CallError) -> BackendError {
    match e.0.strip_prefix(REJECTED) {
        Some(rest) => BackendError::Rejected(rest.to_string()),
        None => BackendError::Failed(e.0),
    }
}

impl Backend for OpenAiBackend {
    fn describe(&self) -> String {
        format!("openai:{}@{}", self.client.config.model, self.client.config.base_url)
    }

    fn parallelism(&self) -> usize {
        self.parallelism
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
        let start = Instant::now();
        let config = &self.client.config;
        let mut body = json!({
            "model": config.model,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        });
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        let chat = match (&request.prompt, self.endpoint) {
            (PromptInput::Chat(messages), Endpoint::Auto | Endpoint::Chat) => {
                body["messages"] = json!(messages);
                if messages.len() > 1 && messages.last().is_some_and(|m| m.role == "assistant") {
                    // The final assistant message is a prefix to continue (vLLM's and
                    // transformers' `continue_final_message`).
                    body["continue_final_message"] = json!(true);
                    body["add_generation_prompt"] = json!(false);
                }
                true
            }
            (PromptInput::Text(text), Endpoint::Chat) => {
                body["messages"] = json!([ChatMessage::new("user", text.clone())]);
                true
            }
            (PromptInput::Text(text), Endpoint::Auto | Endpoint::Completions) => {
                body["prompt"] = json!(text);
                false
            }
            (PromptInput::Chat(_), Endpoint::Completions) => {
                return Err(BackendError::Rejected(
                    "a chat prompt cannot go to /v1/completions; use endpoint = \"auto\" or \"chat\"".into(),
                ))
            }
        };
        let path = if chat { "chat/completions" } else { "completions" };
        let (v, requests) = self.client.post(path, &body).map_err(backend_error)?;
        let choice = &v["choices"][0];
        let text = if chat { choice["message"]["content"].as_str() } else { choice["text"].as_str() };
        let text = text
            .ok_or_else(|| BackendError::Failed(format!("{path}: no generated text in the response: {v:.300}")))?
            .to_string();
        let finish_reason =
            if choice["finish_reason"].as_str() == Some("length") { FinishReason::Length } else { FinishReason::Stop };
        let (prompt, completion) = usage_of(&v);
        Ok(Completion {
            text,
            prompt_tokens: prompt,
            completion_tokens: completion,
            latency_s: start.elapsed().as_secs_f64(),
            finish_reason,
            usage: Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                requests,
                cost_usd: self.client.cost(prompt, completion, requests),
            },
        })
    }
}
