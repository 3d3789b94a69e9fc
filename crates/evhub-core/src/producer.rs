//! The producer trait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::event::{Delivery, Event};

/// Publishes events to one hub. Object safe; share it as `Arc<dyn Producer>` across tasks.
///
/// Every send resolves only after the service acknowledged the event.
#[async_trait]
pub trait Producer: Send + Sync + std::fmt::Debug {
    /// The hub this producer writes to.
    fn hub(&self) -> &str;

    /// Sends one event and waits for the acknowledgement.
    async fn send(&self, event: Event) -> Result<Delivery>;

    /// Sends events concurrently and waits for all acknowledgements, returned in input order.
    ///
    /// On error, events before the failing one may have been stored: retrying the batch is
    /// at-least-once. An oversize event fails the call with
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) before anything is sent.
    async fn send_batch(&self, events: Vec<Event>) -> Result<Vec<Delivery>>;

    /// Queues `events` for sending and returns as soon as they are queued, with a
    /// [`PendingBatch`] that resolves like [`send_batch`](Self::send_batch) once the service
    /// acknowledged them. This lets a caller keep several batches in flight (a pipeline sink,
    /// a mirror) without giving up order:
    ///
    /// - events queued by one call stay in input order, and events of a later call are queued
    ///   after them, per partition, when the calls are made one after the other (the next call
    ///   starts after the previous one returned);
    /// - an error from this call means nothing was queued; an error from the `PendingBatch`
    ///   means some events may have been stored (retrying is at-least-once, as with
    ///   `send_batch`). An oversize event fails the batch with
    ///   [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) before anything is sent, from
    ///   this call or from the `PendingBatch`.
    ///
    /// The default body sends the batch to the end and returns an already-resolved
    /// `PendingBatch`, which is correct for every producer but keeps one batch in flight.
    /// Backends with a client-side send queue (Kafka) override it.
    async fn enqueue_batch(&self, events: Vec<Event>) -> Result<PendingBatch> {
        let result = self.send_batch(events).await;
        Ok(PendingBatch::ready(result))
    }

    /// Waits until every send started so far is acknowledged.
    async fn flush(&self) -> Result<()>;

    /// Flushes and releases the connection. Later calls fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    async fn close(&self) -> Result<()>;
}

/// The acknowledgements of a batch queued by [`Producer::enqueue_batch`]: resolves to the
/// deliveries in input order, or to the first error. Owned (`'static`), so it can be awaited
/// from another task; dropping it does not cancel the sends.
#[must_use = "a PendingBatch reports whether the events were stored"]
pub struct PendingBatch(BoxFuture<'static, Result<Vec<Delivery>>>);

impl PendingBatch {
    /// Wraps the future that resolves when the batch is acknowledged.
    pub fn new(future: impl Future<Output = Result<Vec<Delivery>>> + Send + 'static) -> Self {
        Self(Box::pin(future))
    }

    /// A batch whose outcome is already known.
    pub fn ready(result: Result<Vec<Delivery>>) -> Self {
        Self(Box::pin(futures::future::ready(result)))
    }
}

impl Future for PendingBatch {
    type Output = Result<Vec<Delivery>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for PendingBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingBatch")
    }
}
