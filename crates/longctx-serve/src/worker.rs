//! The generation worker: one std thread that runs queued jobs one at a time on the native
//! backend (it has one KV cache), fed by a bounded queue.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use longctx_backends::native::NativeBackend;
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

/// Starts the worker with room for `capacity` waiting jobs (0: none wait; a job is taken
/// only when the worker is idle). The worker ends when every [`Queue`] is dropped, after
/// finishing the jobs already queued.
pub(crate) fn spawn(backend: Arc<NativeBackend>, capacity: usize) -> std::io::Result<(Queue, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(capacity);
    let load = Arc::new(Load::default());
    let worker_load = Arc::clone(&load);
    let handle =
        std::thread::Builder::new().name("longctx-generate".into()).spawn(move || run(&backend, &rx, &worker_load))?;
    Ok((Queue { tx, load }, handle))
}

fn run(backend: &NativeBackend, rx: &Receiver<Job>, load: &Load) {
    while let Ok(job) = rx.recv() {
        load.waiting.fetch_sub(1, Ordering::SeqCst);
        if job.reply.is_closed() {
            tracing::debug!("the client went away before its request started; skipped");
            continue;
        }
        load.running.store(1, Ordering::SeqCst);
        // A panic in the runtime answers 500 and leaves the worker serving.
        // A client that goes away (a timeout, a closed stream) stops its generation.
        let gone = || job.reply.is_closed();
        let result = catch_unwind(AssertUnwindSafe(|| match &job.reply {
            Reply::Once(_) => backend.generate_ids_until(&job.ids, &job.request, None, &gone),
            Reply::Stream(tx) => {
                let mut send = |text: &str| {
                    let _ = tx.send(Event::Text(text.to_owned()));
                };
                backend.generate_ids_until(&job.ids, &job.request, Some(&mut send), &gone)
            }
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(BackendError::Failed(format!("generation panicked: {what}")))
        });
        load.running.store(0, Ordering::SeqCst);
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
    tracing::debug!("the generation worker has stopped");
}
