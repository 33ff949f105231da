//! `longctx serve`: an OpenAI-compatible HTTP server over the native runtime
//! ([`NativeBackend`]), and a bounded loopback load
//! test ([`load_test`]).
//!
//! # Endpoints
//!
//! - `GET /health`: `{"status": "ok", "waiting": n, "running": n, "prefix_cache": {"hits",
//!   "reused_tokens"}}`; 503 and
//!   `"shutting_down"` during shutdown.
//! - `GET /v1/models`: `{"object": "list", "data": [{"id", "object": "model", "created",
//!   "owned_by", "max_model_len"}]}`.
//! - `POST /v1/chat/completions`: `messages` (content a string or text parts), `max_tokens`
//!   (or `max_completion_tokens`; omitted: `--max-tokens-default`, lowered to what the window
//!   leaves), `temperature` (OpenAI's default 1.0 when omitted; the value is used as given,
//!   0 is greedy), `seed` (omitted: a fresh one per request), `stop` (a string or a list),
//!   `stream`, `stream_options.include_usage`. Other fields are ignored, `model` included;
//!   `n` must be 1. The answer: `id`, `object: "chat.completion"`, `created`, `model`,
//!   `choices[0].message{role, content}`, `choices[0].finish_reason` (`stop` or `length`),
//!   `usage{prompt_tokens, completion_tokens, total_tokens}`. Messages go through the
//!   model's chat template exactly as the runner's native path renders them.
//! - `POST /v1/completions`: `prompt` (a string or a list of one), the same options;
//!   `choices[0].text`. Raw text is tokenized with the model's special tokens.
//! - Streaming (`"stream": true`): server-sent events `data: {chunk}`, one chunk per piece of
//!   text (`choices[0].delta.content`, or `choices[0].text` for completions), a last chunk
//!   with `finish_reason`, with `include_usage` a chunk with `usage` and no choices, then
//!   `data: [DONE]`. The pieces concatenated are the non-streamed text.
//! - `POST /v1/embeddings` (with `--embedder`; else 404): `input` (a string or a list);
//!   `data[i]{object: "embedding", index, embedding}`, `usage{prompt_tokens, total_tokens}`.
//!
//! Errors are `{"error": {"message", "type", "param", "code"}}`: 400 for malformed JSON,
//! missing or invalid fields, or a prompt that with `max_tokens` exceeds the window (code
//! `context_length_exceeded`, the message gives the token counts); 404 for an unknown route;
//! 405 for a wrong method; 413 for a body over `--max-body-bytes`; 429 with `Retry-After`
//! when `--queue` requests already wait; 503 during shutdown; 500 for a failure.
//!
//! # Scheduling
//!
//! Prompts are rendered, tokenized and checked against the window before they are queued,
//! so that a 400 never waits in line. One worker thread runs the queued requests one at a
//! time (the model has one KV cache); streamed text comes from it through a channel. A
//! request whose client has gone away before it starts is skipped; one that goes away
//! mid-stream runs to its end unheard. On SIGINT or SIGTERM the listener closes, requests
//! arriving on open connections are answered 503, and those already accepted finish.
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     serve: longctx_serve::ServeArgs,
//! }
//!
//! let cli = Cli::parse_from(["longctx", "--model", "model.gguf", "--port", "0", "--queue", "4"]);
//! let config = cli.serve.server_config()?;
//! assert_eq!((config.addr.to_string(), config.queue), ("127.0.0.1:0".to_string(), 4));
//! // longctx_serve::run(&cli.serve) would load the model and serve until Ctrl-C.
//! # Ok::<(), longctx_serve::Error>(())
//! ```

mod api;
mod args;
mod faults;
mod load;
mod server;
mod worker;

use std::sync::Arc;

use longctx_backends::native::NativeBackend;
use longctx_context::embed::SentenceEmbedder;

pub use args::{Dtype, KvCacheType, LoadTestArgs, ServeArgs};
pub use faults::{Fault, Faults};
pub use load::{load_test, Latency, LevelReport, LoadReport};
pub use server::{Server, ServerConfig};
pub use worker::BatchLimits;

/// Errors of `longctx serve` and the load test.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model failed to load.
    #[error(transparent)]
    Backend(#[from] longctx_backends::Error),
    /// The embedder failed to load.
    #[error(transparent)]
    Embedder(#[from] longctx_context::Error),
    /// Bad settings (the message says which).
    #[error("{0}")]
    Config(String),
    /// An I/O failure (binding the port, starting threads, serving).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The load test could not run (the server is unreachable or answers nonsense).
    #[error("load test: {0}")]
    LoadTest(String),
}

/// Loads the model (and the embedder), serves until SIGINT or SIGTERM, then shuts down
/// gracefully: the requests already accepted finish before it returns.
pub fn run(args: &ServeArgs) -> Result<(), Error> {
    let config = args.server_config()?;
    tracing::info!("loading {}", args.model.display());
    let backend = Arc::new(NativeBackend::load(&args.model, &args.native_options())?);
    backend.set_prefix_cache_bytes(args.prefix_cache_bytes());
    let embedder = match &args.embedder {
        Some(dir) => {
            tracing::info!("loading the embedder {}", dir.display());
            Some(Arc::new(SentenceEmbedder::load(dir)?))
        }
        None => None,
    };
    let (name, window) = (backend.name().to_string(), backend.window());
    let server = Server::start(backend, embedder, config)?;
    tracing::info!("serving {name} (window {window} tokens) on {}; Ctrl-C stops", server.url());
    server.wait_for_signal()?;
    server.shutdown()?;
    tracing::info!("stopped");
    Ok(())
}
