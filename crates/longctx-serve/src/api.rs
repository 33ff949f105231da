//! OpenAI's wire format: request bodies, answers, stream chunks and errors.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use longctx_core::{BackendError, ChatMessage, Completion, FinishReason, PromptInput};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// An error answered as `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_s: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub(crate) fn busy(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                "the queue of waiting requests is full; retry later",
            )
        }
    }

    pub(crate) fn shutting_down() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
    }

    /// A body the extractor refused: over the size limit (413) or unreadable (400).
    pub(crate) fn from_rejection(rejection: &BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
        Self::new(status, code, rejection.body_text())
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            429 => "rate_limit_error",
            503 => "service_unavailable_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    pub(crate) fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind(), "param": null, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::PromptTooLong { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "context_length_exceeded", e.to_string())
            }
            BackendError::Rejected(m) => Self::bad_request(m),
            // Nobody reads this answer: the client has gone.
            BackendError::Cancelled { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "cancelled", e.to_string()),
            // The first line only: runtime errors may carry a backtrace (logged by the worker).
            BackendError::Failed(m) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "generation_failed", m.lines().next().unwrap_or_default())
            }
        }
    }
}

/// Parses a JSON body; a malformed body or a missing field is a 400 naming the problem.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// A string or a list of strings (`stop`, `prompt`, `input`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Message content: a string or a list of `{"type": "text", "text": ...}` parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The options both generation endpoints take; other OpenAI fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct CommonOptions {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    seed: Option<i64>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<usize>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatBody {
    messages: Vec<Message>,
    #[serde(flatten)]
    options: CommonOptions,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionBody {
    prompt: OneOrMany,
    #[serde(flatten)]
    options: CommonOptions,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsBody {
    pub(crate) input: OneOrMany,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) encoding_format: Option<String>,
}

/// A validated generation request, before the prompt is rendered.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) prompt: PromptInput,
    /// `max_tokens` (or `max_completion_tokens`); `None`: the server's default.
    pub(crate) max_tokens: Option<usize>,
    pub(crate) temperature: f64,
    pub(crate) seed: u64,
    pub(crate) stop: Vec<String>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl CommonOptions {
    fn into_generation(self, prompt: PromptInput, default_seed: u64) -> Result<Generation, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported"));
        }
        let max_tokens = self.max_tokens.or(self.max_completion_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::bad_request("max_tokens must be at least 1"));
        }
        // OpenAI's default and range; the value is used as given (0 is greedy).
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_request(format!("temperature must be between 0 and 2, not {temperature}")));
        }
        let stop: Vec<String> = self.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::bad_request("stop strings must not be empty"));
        }
        Ok(Generation {
            prompt,
            max_tokens,
            temperature,
            #[allow(clippy::cast_sign_loss)] // OpenAI seeds are signed; any 64 bits do.
            seed: self.seed.map_or(default_seed, |s| s as u64),
            stop,
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

impl ChatBody {
    pub(crate) fn into_generation(self, default_seed: u64) -> Result<Generation, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::bad_request(format!(
                                    "messages[{i}]: content parts of type {kind:?} are not supported (only text)"
                                )))
                            }
                        }
                    }
                    text
                }
            };
            messages.push(ChatMessage::new(m.role, content));
        }
        self.options.into_generation(PromptInput::Chat(messages), default_seed)
    }
}

impl CompletionBody {
    pub(crate) fn into_generation(self, default_seed: u64) -> Result<Generation, ApiError> {
        let mut prompts = self.prompt.into_vec();
        if prompts.len() != 1 {
            return Err(ApiError::bad_request(format!("prompt must be one string, not a list of {}", prompts.len())));
        }
        let prompt = prompts.pop().unwrap_or_default();
        self.options.into_generation(PromptInput::Text(prompt), default_seed)
    }
}

/// The two generation endpoints, which differ only in how text is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Text,
}

/// What every answer and chunk of one request repeats.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: u64,
}

pub(crate) fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    })
}

impl Kind {
    pub(crate) fn id_prefix(self) -> &'static str {
        match self {
            Self::Chat => "chatcmpl",
            Self::Text => "cmpl",
        }
    }
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    fn wrap(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The non-streamed answer.
    pub(crate) fn answer(&self, c: &Completion) -> Value {
        let reason = finish_reason(c.finish_reason);
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": null,
                "finish_reason": reason,
            }),
            Kind::Text => json!({"index": 0, "text": c.text, "logprobs": null, "finish_reason": reason}),
        };
        let mut v = self.wrap(false, json!([choice]));
        v["usage"] = usage(c);
        v
    }

    /// A stream chunk carrying `text` (for chat, with the role in the first one).
    pub(crate) fn chunk(&self, text: &str, first: bool, finish: Option<FinishReason>) -> Value {
        let reason = finish.map(finish_reason);
        let choice = match self.kind {
            Kind::Chat if first => {
                json!({"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": reason})
            }
            Kind::Chat if finish.is_some() => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason})
            }
            Kind::Chat => json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": reason}),
            Kind::Text => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason}),
        };
        self.wrap(true, json!([choice]))
    }

    /// The usage chunk sent last with `stream_options.include_usage` (no choices).
    pub(crate) fn usage_chunk(&self, c: &Completion) -> Value {
        let mut v = self.wrap(true, json!([]));
        v["usage"] = usage(c);
        v
    }
}

/// One server-sent event line.
pub(crate) fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_accept_openai_variants() {
        let body: ChatBody = parse(
            br#"{"messages": [{"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                {"role": "user", "content": "Hi"}], "max_completion_tokens": 5, "stop": "\n", "seed": -1,
                "stream": true, "stream_options": {"include_usage": true}, "top_p": 0.9}"#,
        )
        .unwrap();
        let g = body.into_generation(0).unwrap();
        let PromptInput::Chat(messages) = &g.prompt else { panic!("a chat prompt") };
        assert_eq!(messages[0].content, "Be brief.");
        assert_eq!((g.max_tokens, g.stop.as_slice(), g.seed), (Some(5), ["\n".to_string()].as_slice(), u64::MAX));
        assert!(g.stream && g.include_usage);
        assert_eq!(g.temperature, 1.0);

        let body: CompletionBody = parse(br#"{"prompt": ["Once"], "stop": ["a", "b"], "temperature": 0}"#).unwrap();
        let g = body.into_generation(7).unwrap();
        assert_eq!((g.prompt, g.stop.len(), g.seed, g.temperature), (PromptInput::Text("Once".into()), 2, 7, 0.0));
    }

    #[test]
    fn bad_requests_are_400() {
        let bad = |body: &[u8]| {
            let e = parse::<ChatBody>(body).and_then(|b| b.into_generation(0)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
            e.message
        };
        assert!(bad(b"{").contains("invalid request body"));
        assert!(bad(br#"{"model": "m"}"#).contains("missing field `messages`"));
        bad(br#"{"messages": []}"#);
        bad(br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#);
        bad(br#"{"messages": [{"role": "user", "content": "x"}], "temperature": 3}"#);
        bad(br#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#);
        bad(br#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#);
        let e = parse::<CompletionBody>(br#"{"prompt": ["a", "b"]}"#).and_then(|b| b.into_generation(0)).unwrap_err();
        assert!(e.message.contains("one string"));
    }

    #[test]
    fn errors_have_openai_shape() {
        let e = ApiError::from(BackendError::PromptTooLong { prompt_tokens: 90, max_new_tokens: 20, window: 100 });
        let v = e.body();
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("90 tokens"));
        let r = ApiError::busy(2).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
