//! The HTTP server: routes, handlers, fault injection and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use longctx_backends::native::NativeBackend;
use longctx_context::embed::SentenceEmbedder;
use longctx_core::GenerationRequest;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::api::{self, ApiError, ChatBody, CompletionBody, EmbeddingsBody, Kind, Meta};
use crate::faults::{Fault, Faults};
use crate::worker::{self, BatchLimits, Event, Job, Queue, Reply, SubmitError};
use crate::Error;

/// Settings of a [`Server`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one (see [`Server::addr`]).
    pub addr: SocketAddr,
    /// The model's name in `/v1/models` and in answers (default: the backend's name, its
    /// file or directory name). Requests may name any model: the field is not checked.
    pub served_model_name: Option<String>,
    /// Generation requests that may wait while one runs; more are answered 429.
    pub queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// `max_tokens` of requests that give none (lowered to what the window leaves).
    pub max_tokens_default: usize,
    /// How many requests are decoded together.
    pub batch: BatchLimits,
    /// Injected faults (none by default).
    pub faults: Faults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            served_model_name: None,
            queue: 16,
            max_body_bytes: 16 << 20,
            max_tokens_default: 256,
            batch: BatchLimits::default(),
            faults: Faults::default(),
        }
    }
}

/// What the handlers share.
struct AppState {
    backend: Arc<NativeBackend>,
    embedder: Option<Arc<SentenceEmbedder>>,
    /// One embedding batch at a time (the encoder uses every core already).
    embed_gate: Semaphore,
    queue: Queue,
    model: String,
    config: ServerConfig,
    created: u64,
    /// API requests so far (fault draws and request ids).
    requests: AtomicU64,
    stopping: watch::Receiver<bool>,
}

type Shared = Arc<AppState>;
type Answer = Result<Response, Response>;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl AppState {
    /// Refuses requests once shutdown has begun (503), then numbers the request and applies
    /// its injected fault.
    async fn admit(&self) -> Result<u64, Response> {
        if *self.stopping.borrow() {
            return Err(ApiError::shutting_down().into());
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        match self.config.faults.fault_for(n) {
            None => {}
            Some(Fault::Error500) => {
                tracing::debug!(request = n, "injected fault: 500");
                return Err(ApiError::internal("injected fault").into());
            }
            Some(Fault::Drop) => {
                tracing::debug!(request = n, "injected fault: dropped connection");
                // A body that fails before its first byte makes hyper close the connection
                // without writing the response.
                let failing = futures_util::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::other("injected fault: connection dropped"))
                });
                return Err(Response::new(Body::from_stream(failing)));
            }
            Some(Fault::Slow(delay)) => {
                tracing::debug!(request = n, "injected fault: {:.3} s delay", delay.as_secs_f64());
                tokio::time::sleep(delay).await;
            }
        }
        Ok(n)
    }

    fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.queue.submit(job).map_err(|e| match e {
            SubmitError::Full => ApiError::busy(1),
            SubmitError::Stopped => ApiError::shutting_down(),
        })
    }
}

/// A running server: its own tokio runtime serves HTTP; one worker thread generates.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    running: Option<Running>,
}

struct Running {
    runtime: Runtime,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Starts serving `backend` (and `embedder` on `/v1/embeddings`) on `config.addr`;
    /// returns once the socket is bound.
    pub fn start(
        backend: Arc<NativeBackend>,
        embedder: Option<Arc<SentenceEmbedder>>,
        config: ServerConfig,
    ) -> Result<Self, Error> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| Error::Io { what, source }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("longctx-serve")
            .build()
            .map_err(io("starting the runtime"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.addr))
            .map_err(io(&format!("binding {}", config.addr)))?;
        let addr = listener.local_addr().map_err(io("reading the bound address"))?;
        let (queue, worker) =
            worker::spawn(Arc::clone(&backend), config.queue, config.batch).map_err(io("starting the worker"))?;
        let (stop, stopping) = watch::channel(false);
        let model = config.served_model_name.clone().unwrap_or_else(|| backend.name().to_string());
        let state = Arc::new(AppState {
            backend,
            embedder,
            embed_gate: Semaphore::new(1),
            queue,
            model,
            created: unix_now(),
            requests: AtomicU64::new(0),
            stopping: stopping.clone(),
            config,
        });
        let app = router(state);
        let mut until = stopping;
        let serve = runtime.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = until.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self { addr, stop, running: Some(Running { runtime, serve, worker }) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the bound address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Begins a graceful shutdown without waiting: the listener closes, requests that come
    /// on open connections are answered 503, and those already queued or running go on.
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Blocks until SIGINT (Ctrl-C) or SIGTERM.
    pub fn wait_for_signal(&self) -> Result<(), Error> {
        let Some(running) = &self.running else { return Ok(()) };
        running
            .runtime
            .block_on(shutdown_signal())
            .map_err(|source| Error::Io { what: "waiting for signals".into(), source })
    }

    /// Shuts down gracefully: stops accepting, finishes the requests already queued or
    /// running, and returns once every connection is closed and the worker has stopped.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop_and_wait()
    }

    fn stop_and_wait(&mut self) -> Result<(), Error> {
        let Some(Running { runtime, serve, worker }) = self.running.take() else { return Ok(()) };
        self.begin_shutdown();
        let served = runtime.block_on(serve);
        // Dropping the runtime drops the router and with it the queue, which ends the worker.
        runtime.shutdown_timeout(Duration::from_secs(30));
        if worker.join().is_err() {
            tracing::error!("the generation worker panicked");
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Io { what: "serving".into(), source }),
            Err(e) => Err(Error::Io { what: "serving".into(), source: std::io::Error::other(e) }),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_wait() {
            tracing::error!("shutting down: {e}");
        }
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down: finishing the requests already accepted");
    Ok(())
}

fn router(state: Shared) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// `GET /health`: `{"status": "ok"|"shutting_down", "waiting": n, "running": n,
/// "prefix_cache": {"hits": n, "reused_tokens": n}}` (503 while shutting down).
async fn health(State(state): State<Shared>) -> Response {
    let stopping = *state.stopping.borrow();
    let load = &state.queue.load;
    let prefix = state.backend.prefix_cache_stats();
    let body = json!({
        "status": if stopping { "shutting_down" } else { "ok" },
        "waiting": load.waiting.load(Ordering::SeqCst),
        "running": load.running.load(Ordering::SeqCst),
        "prefix_cache": {"hits": prefix.hits, "reused_tokens": prefix.reused_tokens},
    });
    let status = if stopping { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

/// `GET /v1/models`: the served model, with its window as `max_model_len` (as vLLM does).
async fn models(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model,
            "object": "model",
            "created": state.created,
            "owned_by": "longctx",
            "max_model_len": state.backend.window(),
        }],
    }))
}

async fn chat(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Answer {
    generate(state, Kind::Chat, body).await
}

async fn completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Answer {
    generate(state, Kind::Text, body).await
}

/// Both generation endpoints: validate, render and check the window (so that a 400 never
/// waits in line), queue, then answer at once or stream.
async fn generate(state: Shared, kind: Kind, body: Result<Bytes, BytesRejection>) -> Answer {
    let start = Instant::now();
    let n = state.admit().await?;
    let body = body.map_err(|r| ApiError::from_rejection(&r))?;
    // Requests without a seed sample differently each time, as OpenAI's do.
    let seed = n ^ u64::from(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()));
    let generation = match kind {
        Kind::Chat => api::parse::<ChatBody>(&body)?.into_generation(seed)?,
        Kind::Text => api::parse::<CompletionBody>(&body)?.into_generation(seed)?,
    };
    let backend = Arc::clone(&state.backend);
    let prompt = generation.prompt.clone();
    let (max_default, requested) = (state.config.max_tokens_default, generation.max_tokens);
    let (ids, max_new_tokens) = tokio::task::spawn_blocking(move || {
        let rendered = backend.render(&prompt)?;
        let tokens = rendered.ids.len();
        let max_new = requested.unwrap_or_else(|| max_default.min(backend.window().saturating_sub(tokens)).max(1));
        backend.check_fits(tokens, max_new)?;
        Ok::<_, ApiError>((rendered.ids, max_new))
    })
    .await
    .map_err(|e| ApiError::internal(format!("rendering the prompt: {e}")))??;
    let request = GenerationRequest {
        prompt: generation.prompt,
        max_new_tokens,
        stop: generation.stop,
        temperature: generation.temperature,
        seed: generation.seed,
    };
    let meta = Meta {
        kind,
        id: format!("{}-{:x}-{n}", kind.id_prefix(), state.created),
        model: state.model.clone(),
        created: unix_now(),
    };
    tracing::debug!(request = n, prompt_tokens = ids.len(), max_new_tokens, stream = generation.stream, "queued");
    if generation.stream {
        let (tx, rx) = mpsc::unbounded_channel();
        state.submit(Job { ids, request, reply: Reply::Stream(tx) })?;
        return Ok(stream(meta, rx, generation.include_usage));
    }
    let (tx, rx) = oneshot::channel();
    state.submit(Job { ids, request, reply: Reply::Once(tx) })?;
    let completion =
        rx.await.map_err(|_| ApiError::internal("the generation worker stopped"))?.map_err(ApiError::from)?;
    tracing::debug!(request = n, "answered in {:.3} s", start.elapsed().as_secs_f64());
    Ok(Json(meta.answer(&completion)).into_response())
}

/// Server-sent events: a chunk per piece of text, a last chunk with `finish_reason`, the
/// usage chunk when asked for, then `data: [DONE]`. A failure mid-stream is sent as an
/// `{"error": ...}` event before `[DONE]`.
fn stream(meta: Meta, rx: mpsc::UnboundedReceiver<Event>, include_usage: bool) -> Response {
    let events = futures_util::stream::unfold((rx, meta, true), move |(mut rx, meta, first)| async move {
        let text = match rx.recv().await? {
            Event::Text(piece) => api::sse(&meta.chunk(&piece, first, None)),
            Event::Done(Ok(c)) => {
                let mut text = String::new();
                if first {
                    text += &api::sse(&meta.chunk("", true, None));
                }
                text += &api::sse(&meta.chunk("", false, Some(c.finish_reason)));
                if include_usage {
                    text += &api::sse(&meta.usage_chunk(&c));
                }
                text + "data: [DONE]\n\n"
            }
            Event::Done(Err(e)) => api::sse(&ApiError::from(e).body()) + "data: [DONE]\n\n",
        };
        Some((Ok::<_, Infallible>(text), (rx, meta, false)))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

/// `POST /v1/embeddings`: `{"object": "list", "data": [{"object": "embedding", "index",
/// "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}`; 404 without an
/// embedder.
async fn embeddings(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Answer {
    let Some(embedder) = state.embedder.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server has no embedder; start it with --embedder DIR",
        )
        .into());
    };
    state.admit().await?;
    let body = body.map_err(|r| ApiError::from_rejection(&r))?;
    let request: EmbeddingsBody = api::parse(&body)?;
    if request.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(ApiError::bad_request("only encoding_format \"float\" is supported").into());
    }
    let model = request.model.unwrap_or_else(|| state.model.clone());
    let texts = request.input.into_vec();
    if texts.is_empty() {
        return Err(ApiError::bad_request("input must not be empty").into());
    }
    let _turn = state.embed_gate.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
    let (vectors, tokens) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = embedder.embed_texts(&refs)?;
        let mut tokens = 0;
        for t in &refs {
            tokens += embedder.token_ids(t)?.len();
        }
        Ok::<_, longctx_context::Error>((vectors, tokens))
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding: {e}")))?
    .map_err(|e| ApiError::internal(format!("embedding: {e}")))?;
    let data = vectors.into_iter().enumerate().map(|(index, embedding)| EmbeddingItem {
        object: "embedding",
        index,
        embedding,
    });
    Ok(Json(Embeddings {
        object: "list",
        data: data.collect(),
        model,
        usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
    })
    .into_response())
}

// Typed rather than `json!`, so that each f32 is written in its shortest form.
#[derive(serde::Serialize)]
struct Embeddings {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: EmbeddingUsage,
}

#[derive(serde::Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(serde::Serialize)]
struct EmbeddingUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}
