//! The handler trait, closures as handlers, and the forwarding handler of mirrors.

use std::future::Future;

use async_trait::async_trait;
use evhub_core::{ReceivedEvent, Result};

use crate::decision::{Decision, Output};

/// Processes one source event. Called in order for the events of a partition (of a key, with
/// [`key_concurrency`](crate::PipelineBuilder::key_concurrency)); may be called again for the
/// same event after a retriable error, a restart or a rebalance (at-least-once), so it should
/// be idempotent or tolerate duplicates.
///
/// Errors decide the failure policy: [retriable](evhub_core::Error::is_retriable) ones are
/// retried with backoff, others send the event to the dead-letter hub. Use
/// `Error::new(kind, msg).with_retriable(true)` to mark an error of your own as transient.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Decides what becomes of `event`.
    async fn handle(&self, event: &ReceivedEvent) -> Result<Decision>;
}

/// A handler from an async closure taking the event by value (see [`handler_fn`]).
#[derive(Debug, Clone)]
pub struct FnHandler<F>(F);

/// Wraps an async closure as a [`Handler`].
///
/// ```
/// use evhub_pipeline::{handler_fn, Decision};
/// let upper = handler_fn(|event: evhub_core::ReceivedEvent| async move {
///     let mut out = event.to_event();
///     out.payload = event.payload.to_ascii_uppercase().into();
///     Ok(Decision::forward(out))
/// });
/// # let _ = upper;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(ReceivedEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision>> + Send + 'static,
{
    FnHandler(f)
}

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(ReceivedEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision>> + Send + 'static,
{
    async fn handle(&self, event: &ReceivedEvent) -> Result<Decision> {
        (self.0)(event.clone()).await
    }
}

/// Forwards every event unchanged (payload, key and headers byte-exact) to every sink: a
/// mirror. Optionally keeps the source partition number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward {
    keep_partition: bool,
}

/// The mirror handler: every event to every sink, unchanged.
pub fn forward() -> Forward {
    Forward::default()
}

impl Forward {
    /// Sends each event to the sink partition with the source's partition number (the sink
    /// needs at least as many partitions), instead of placing it by key.
    pub fn keep_partition(mut self, keep: bool) -> Self {
        self.keep_partition = keep;
        self
    }
}

#[async_trait]
impl Handler for Forward {
    async fn handle(&self, event: &ReceivedEvent) -> Result<Decision> {
        let mut out = event.to_event();
        if self.keep_partition {
            out.partition = Some(event.partition);
        }
        Ok(Decision::Emit(vec![Output::new(out)]))
    }
}
