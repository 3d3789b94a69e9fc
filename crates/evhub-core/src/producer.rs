//! The producer trait.

use async_trait::async_trait;

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

    /// Waits until every send started so far is acknowledged.
    async fn flush(&self) -> Result<()>;

    /// Flushes and releases the connection. Later calls fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    async fn close(&self) -> Result<()>;
}
