//! Continuous batching over the native backend: one std thread decodes the queued requests
//! together ([`NativeBackend::start`] / [`NativeBackend::step`] / [`NativeBackend::finish`]),
//! one KV cache per request within a memory budget, fed by a bounded queue. `longctx serve`
//! answers HTTP clients with it; [`BatchedBackend`] puts it behind the [`Backend`] trait so
//! that `longctx run` decodes the variants of a sample (and the next samples) as one batch.
//!
//! Requests join at step boundaries, every step runs one forward pass over a chunk of each
//! joining request's prompt and one token of each decoding request, and finished or abandoned
//! requests leave after the step that ended them. Each request gets exactly the tokens it
//! would get alone.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use longctx_core::{Backend, BackendError, Completion, GenerationRequest};

use crate::native::{Active, NativeBackend};

/// Where a request's answer goes.
pub trait Reply: Send + 'static {
    /// Whether the requester has gone away (its generation then stops).
    fn is_closed(&self) -> bool {
        false
    }
    /// Whether the requester takes the text piece by piece ([`Reply::text`]).
    fn streams(&self) -> bool {
        false
    }
    /// A settled piece of generated text (called only when [`Reply::streams`]).
    fn text(&self, _piece: String) {}
    /// The end: the whole completion or the failure.
    fn done(self, result: Result<Completion, BackendError>);
}

/// A blocking caller waiting on a channel (what [`BatchedBackend`] uses).
impl Reply for mpsc::Sender<Result<Completion, BackendError>> {
    fn done(self, result: Result<Completion, BackendError>) {
        let _ = self.send(result);
    }
}

/// A rendered prompt that fits the window, waiting for the worker.
#[derive(Debug)]
pub struct Job<R> {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// What to generate (the prompt in it is not used: `ids` is).
    pub request: GenerationRequest,
    /// Where the answer goes.
    pub reply: R,
}

/// Jobs waiting and running (what `/health` shows).
#[derive(Debug, Default)]
pub struct Load {
    /// Queued, not yet started.
    pub waiting: AtomicUsize,
    /// Being decoded.
    pub running: AtomicUsize,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The worker has stopped.
    Stopped,
}

/// The sending side of the queue.
#[derive(Debug)]
pub struct Queue<R> {
    tx: SyncSender<Job<R>>,
    /// The worker's load.
    pub load: Arc<Load>,
}

impl<R> Clone for Queue<R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), load: Arc::clone(&self.load) }
    }
}

impl<R> Queue<R> {
    /// Queues `job` unless the queue is full.
    pub fn submit(&self, job: Job<R>) -> Result<(), SubmitError> {
        self.load.waiting.fetch_add(1, Ordering::SeqCst);
        self.tx.try_send(job).map_err(|e| {
            self.load.waiting.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            }
        })
    }

    /// Queues `job`, waiting for room when the queue is full.
    pub fn submit_wait(&self, job: Job<R>) -> Result<(), SubmitError> {
        self.load.waiting.fetch_add(1, Ordering::SeqCst);
        self.tx.send(job).map_err(|_| {
            self.load.waiting.fetch_sub(1, Ordering::SeqCst);
            SubmitError::Stopped
        })
    }
}

/// How many requests the worker decodes together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    /// Requests decoded in one forward pass at most (1: one at a time).
    pub max_batch: usize,
    /// KV cache bytes the requests being decoded may hold together (each holds its prompt
    /// plus its `max_tokens`); a request that would go over waits for others to finish. One
    /// request alone is always admitted.
    pub kv_budget_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_batch: 16, kv_budget_bytes: 4 << 30 }
    }
}

/// Starts the worker with room for `capacity` waiting jobs (0: none wait; a job is taken
/// only when the worker has room for it). The worker ends when every [`Queue`] is dropped,
/// after finishing the jobs already queued.
pub fn spawn<R: Reply>(
    backend: Arc<NativeBackend>,
    capacity: usize,
    limits: BatchLimits,
) -> std::io::Result<(Queue<R>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(capacity);
    let load = Arc::new(Load::default());
    let worker_load = Arc::clone(&load);
    let handle = std::thread::Builder::new()
        .name("longctx-generate".into())
        .spawn(move || run(&backend, &rx, &worker_load, limits))?;
    Ok((Queue { tx, load }, handle))
}

/// A panic's message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Sends `job` its answer.
fn reply<R: Reply>(job: Job<R>, result: Result<Completion, BackendError>) {
    match &result {
        Ok(c) => tracing::debug!(
            prompt_tokens = c.prompt_tokens,
            completion_tokens = c.completion_tokens,
            "generated in {:.3} s",
            c.latency_s
        ),
        Err(BackendError::Cancelled { completion_tokens }) => {
            tracing::debug!("the client went away after {completion_tokens} tokens; generation stopped");
        }
        Err(e) => tracing::warn!("generation failed: {e}"),
    }
    job.reply.done(result);
}

/// Streams the settled new text of `active` to a streaming requester.
fn stream_text<R: Reply>(backend: &NativeBackend, job: &Job<R>, active: &mut Active) {
    if job.reply.streams() {
        if let Some(piece) = backend.new_text(active) {
            job.reply.text(piece);
        }
    }
}

/// Answers a finished (or cancelled) request.
fn finish<R: Reply>(backend: &NativeBackend, job: Job<R>, active: Active) {
    let (result, rest) = backend.finish(active);
    if let Some(piece) = rest.filter(|_| job.reply.streams()) {
        job.reply.text(piece);
    }
    reply(job, result);
}

/// The worker's state: the requests being decoded (with the KV cache bytes each holds), a
/// job that waits for room, and whether the queue is still open.
struct Batcher<'a, R> {
    backend: &'a NativeBackend,
    load: &'a Load,
    limits: BatchLimits,
    active: Vec<(Job<R>, Active, usize)>,
    pending: Option<Job<R>>,
    open: bool,
}

impl<R: Reply> Batcher<'_, R> {
    /// The next job to admit: the one waiting for room, else a queued one (waiting for one
    /// when nothing runs); `None` when there is none now (or the queue has closed).
    fn next_job(&mut self, rx: &Receiver<Job<R>>) -> Option<Job<R>> {
        if let Some(job) = self.pending.take() {
            return Some(job);
        }
        if !self.open {
            return None;
        }
        let received =
            if self.active.is_empty() { rx.recv().map_err(|_| TryRecvError::Disconnected) } else { rx.try_recv() };
        match received {
            Ok(job) => {
                self.load.waiting.fetch_sub(1, Ordering::SeqCst);
                Some(job)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.open = false;
                None
            }
        }
    }

    /// Admits jobs while there is room: each one gets a sequence of its own (with the prefix
    /// of its prompt the prefix cache holds); the steps feed the rest of its prompt.
    fn admit(&mut self, rx: &Receiver<Job<R>>) {
        while self.active.len() < self.limits.max_batch.max(1) {
            let Some(job) = self.next_job(rx) else { break };
            if job.reply.is_closed() {
                tracing::debug!("the client went away before its request started; skipped");
                continue;
            }
            let need = self.backend.kv_cache_bytes(job.ids.len() + job.request.max_new_tokens);
            let held: usize = self.active.iter().map(|a| a.2).sum();
            if !self.active.is_empty() && held + need > self.limits.kv_budget_bytes {
                self.pending = Some(job);
                break;
            }
            self.load.running.store(self.active.len() + 1, Ordering::SeqCst);
            // A panic in the runtime fails this request and leaves the worker serving.
            let started = catch_unwind(AssertUnwindSafe(|| self.backend.start(&job.ids, &job.request)));
            match started {
                Ok(Ok(mut a)) if !a.is_finished() => {
                    stream_text(self.backend, &job, &mut a);
                    self.active.push((job, a, need));
                }
                Ok(Ok(mut a)) => {
                    stream_text(self.backend, &job, &mut a);
                    self.load.running.store(self.active.len(), Ordering::SeqCst);
                    finish(self.backend, job, a);
                }
                Ok(Err(e)) => {
                    self.load.running.store(self.active.len(), Ordering::SeqCst);
                    reply(job, Err(e));
                }
                Err(panic) => {
                    self.load.running.store(self.active.len(), Ordering::SeqCst);
                    let why = format!("generation panicked: {}", panic_message(&*panic));
                    reply(job, Err(BackendError::Failed(why)));
                }
            }
        }
        self.load.running.store(self.active.len(), Ordering::SeqCst);
    }

    /// One token for every active request in one forward pass; those that end (or whose
    /// requester has gone away) leave and are answered.
    fn step(&mut self) {
        // A client that goes away (a timeout, a closed stream) stops its generation.
        for (job, a, _) in &mut self.active {
            if job.reply.is_closed() {
                a.cancel();
            }
        }
        let (mut jobs, mut batch) = (Vec::with_capacity(self.active.len()), Vec::with_capacity(self.active.len()));
        for (job, a, need) in self.active.drain(..) {
            jobs.push((job, need));
            batch.push(a);
        }
        let failure = match catch_unwind(AssertUnwindSafe(|| self.backend.step(&mut batch))) {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!("generation panicked: {}", panic_message(&*panic))),
        };
        // Those that ended leave before they are answered (`/health` counts what still runs).
        let mut ended = Vec::new();
        for ((job, need), mut a) in jobs.into_iter().zip(batch) {
            if failure.is_none() {
                stream_text(self.backend, &job, &mut a);
            }
            if failure.is_some() || a.is_finished() {
                ended.push((job, a));
            } else {
                self.active.push((job, a, need));
            }
        }
        self.load.running.store(self.active.len(), Ordering::SeqCst);
        for (job, a) in ended {
            match &failure {
                Some(why) => reply(job, Err(BackendError::Failed(why.clone()))),
                None => finish(self.backend, job, a),
            }
        }
    }
}

/// The worker's loop: admit, step, until the queue closes and every request has ended.
fn run<R: Reply>(backend: &NativeBackend, rx: &Receiver<Job<R>>, load: &Load, limits: BatchLimits) {
    let mut batcher = Batcher { backend, load, limits, active: Vec::new(), pending: None, open: true };
    loop {
        batcher.admit(rx);
        if batcher.active.is_empty() {
            if !batcher.open && batcher.pending.is_none() {
                break;
            }
            continue;
        }
        batcher.step();
    }
    load.running.store(0, Ordering::SeqCst);
    tracing::debug!("the generation worker has stopped");
}

type Answer = mpsc::Sender<Result<Completion, BackendError>>;

/// The native backend with requests decoded together: [`Backend::generate`] queues the
/// request for a worker thread that runs up to `max_batch` of them per forward pass, and
/// [`Backend::parallelism`] asks callers for that many in flight. Answers are those of the
/// [`NativeBackend`] alone, token for token.
pub struct BatchedBackend {
    native: Arc<NativeBackend>,
    max_batch: usize,
    /// `None` once dropped (the worker then finishes and ends).
    queue: Option<Queue<Answer>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BatchedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedBackend")
            .field("native", &self.native)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl BatchedBackend {
    /// Starts the worker over `native`.
    pub fn new(native: Arc<NativeBackend>, limits: BatchLimits) -> std::io::Result<Self> {
        let max_batch = limits.max_batch.max(1);
        let (queue, worker) = spawn(Arc::clone(&native), max_batch, limits)?;
        Ok(Self { native, max_batch, queue: Some(queue), worker: Mutex::new(Some(worker)) })
    }

    /// The backend the requests run on.
    pub fn native(&self) -> &Arc<NativeBackend> {
        &self.native
    }
}

impl Drop for BatchedBackend {
    fn drop(&mut self) {
        self.queue = None;
        let worker = self.worker.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }
}

impl Backend for BatchedBackend {
    fn describe(&self) -> String {
        self.native.describe()
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
        let rendered = self.native.render(&request.prompt)?;
        let (tx, rx) = mpsc::channel();
        let queue = self.queue.as_ref().expect("the queue lives until the backend is dropped");
        let stopped = || BackendError::Failed("the generation worker has stopped".into());
        queue.submit_wait(Job { ids: rendered.ids, request: request.clone(), reply: tx }).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    fn parallelism(&self) -> usize {
        self.max_batch
    }
}
