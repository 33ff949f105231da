//! The generation worker: `longctx-backends`' continuous batching
//! ([`longctx_backends::batch`]) answering HTTP handlers, whole or streamed.

use longctx_backends::batch;
use longctx_core::{BackendError, Completion};
use tokio::sync::{mpsc, oneshot};

pub use longctx_backends::batch::BatchLimits;
pub(crate) use longctx_backends::batch::{spawn, SubmitError};

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

impl batch::Reply for Reply {
    /// Whether the client has gone away (its receiver is dropped).
    fn is_closed(&self) -> bool {
        match self {
            Self::Once(tx) => tx.is_closed(),
            Self::Stream(tx) => tx.is_closed(),
        }
    }

    fn streams(&self) -> bool {
        matches!(self, Self::Stream(_))
    }

    fn text(&self, piece: String) {
        if let Self::Stream(tx) = self {
            let _ = tx.send(Event::Text(piece));
        }
    }

    fn done(self, result: Result<Completion, BackendError>) {
        match self {
            Self::Once(tx) => {
                let _ = tx.send(result);
            }
            Self::Stream(tx) => {
                let _ = tx.send(Event::Done(result));
            }
        }
    }
}

/// A rendered prompt that fits the window, waiting for the worker.
pub(crate) type Job = batch::Job<Reply>;

/// The sending side of the queue.
pub(crate) type Queue = batch::Queue<Reply>;
