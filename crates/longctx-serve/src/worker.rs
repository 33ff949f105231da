//! The generation worker: one std thread that decodes the queued jobs together on the native
//! backend (continuous batching, one KV cache per request within a memory budget), fed by a
//! bounded queue.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use longctx_backends::native::{Active, NativeBackend};
use longctx_core::{BackendError, Completion, GenerationRequest};
use tokio::sync::{mpsc, oneshot};

/// What a streamed job sends back.
#[derive(Debug)]
pub(crate) enum Event {
    /// A settled piece of generated text.
    Text(String),
    /// The end: the whole completion or the failure.
    Done(Result<Completion, BackendError>),
}

/// Where a job's answer goes.
#[derive(Debug)]
pub(crate) enum Reply {
    Once(oneshot::Sender<Result<Completion, BackendError>>),
    Stream(mpsc::UnboundedSender<Event>),
}

impl Reply {
    /// Whether the client has gone away (its receiver is dropped).
    fn is_closed(&self) -> bool {
        match self {
            Self::Once(tx) => tx.is_closed(),
            Self::Stream(tx) => tx.is_closed(),
        }
    }
}

/// A rendered prompt that fits the window, waiting for the worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) ids: Vec<u32>,
    pub(crate) request: GenerationRequest,
    pub(crate) reply: Reply,
}

/// Jobs waiting and running, for `/health`.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub(crate) waiting: AtomicUsize,
    pub(crate) running: AtomicUsize,
}

/// Why a job was not queued.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The queue is full.
    Full,
    /// The worker has stopped.
    Stopped,
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    tx: SyncSender<Job>,
    pub(crate) load: Arc<Load>,
}

impl Queue {
    /// Queues `job` unless `capacity` jobs are already waiting.
    pub(crate) fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.load.waiting.fetch_add(1, Ordering::SeqCst);
        self.tx.try_send(job).map_err(|e| {
            self.load.waiting.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            }
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
pub(crate) fn spawn(
    backend: Arc<NativeBackend>,
    capacity: usize,
    limits: BatchLimits,
) -> std::io::Result<(Queue, JoinHandle<()>)> {
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
fn reply(job: Job, result: Result<Completion, BackendError>) {
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
    match job.reply {
        Reply::Once(tx) => {
            let _ = tx.send(result);
        }
        Reply::Stream(tx) => {
            let _ = tx.send(Event::Done(result));
        }
    }
}

/// Streams the settled new text of `active` to a streaming client.
fn stream_text(backend: &NativeBackend, job: &Job, active: &mut Active) {
    if let Reply::Stream(tx) = &job.reply {
        if let Some(piece) = backend.new_text(active) {
            let _ = tx.send(Event::Text(piece));
        }
    }
}

/// Answers a finished (or cancelled) request.
fn finish(backend: &NativeBackend, job: Job, active: Active) {
    let (result, rest) = backend.finish(active);
    if let (Reply::Stream(tx), Some(piece)) = (&job.reply, rest) {
        let _ = tx.send(Event::Text(piece));
    }
    reply(job, result);
}

/// The worker's state: the requests being decoded (with the KV cache bytes each holds), a
/// job that waits for room, and whether the queue is still open.
struct Batcher<'a> {
    backend: &'a NativeBackend,
    load: &'a Load,
    limits: BatchLimits,
    active: Vec<(Job, Active, usize)>,
    pending: Option<Job>,
    open: bool,
}

impl Batcher<'_> {
    /// The next job to admit: the one waiting for room, else a queued one (waiting for one
    /// when nothing runs); `None` when there is none now (or the queue has closed).
    fn next_job(&mut self, rx: &Receiver<Job>) -> Option<Job> {
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
    fn admit(&mut self, rx: &Receiver<Job>) {
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
            // A panic in the runtime answers 500 and leaves the worker serving.
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
    /// client has gone away) leave and are answered.
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

/// Continuous batching: requests join at step boundaries, every step runs one forward pass
/// over a chunk of each joining request's prompt and one token of each decoding request, and
/// finished or abandoned requests leave after the step that ended them.
fn run(backend: &NativeBackend, rx: &Receiver<Job>, load: &Load, limits: BatchLimits) {
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
