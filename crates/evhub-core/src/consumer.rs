//! The consumer-group member and partition reader traits.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{ErrorKind, Result};
use crate::event::{PartitionId, ReceivedEvent};
use crate::position::{InitialPosition, StartPosition};

/// Options for joining a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOptions {
    /// Consumer group name.
    pub group: String,
    /// Where partitions without a checkpoint start; `None` uses the backend's configured default
    /// (`earliest` unless configured otherwise).
    pub initial_position: Option<InitialPosition>,
}

impl ConsumerOptions {
    /// Joins `group` with the backend's default initial position.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            initial_position: None,
        }
    }

    /// Overrides where partitions without a checkpoint start.
    pub fn with_initial_position(mut self, position: InitialPosition) -> Self {
        self.initial_position = Some(position);
        self
    }
}

/// A member of a consumer group on one hub.
///
/// Partitions are assigned to members automatically and rebalanced when members join or leave.
/// Delivery is at-least-once: an event whose checkpoint was not committed is delivered again to
/// the next owner of its partition.
///
/// Commits follow [the commit rule](crate::checkpoint): committing an event's checkpoint marks
/// every earlier event of that partition as processed. Use [`crate::CommitTracker`] when events
/// are processed concurrently or may fail.
///
/// Contract for implementations: group membership and rebalances proceed in the background,
/// not only while `recv` is awaited; after a partition is revoked, no further event of it is
/// returned by `recv`; `recv` is cancel-safe (dropping its future loses no event), so it can be
/// used in `select!` and under timeouts; dropping a member leaves the group.
#[async_trait]
pub trait Consumer: Send + Sync + std::fmt::Debug {
    /// The hub this member reads.
    fn hub(&self) -> &str;

    /// The consumer group.
    fn group(&self) -> &str;

    /// Waits for the next event from any partition owned by this member.
    ///
    /// Fails with [`ErrorKind::Closed`] after [`close`](Self::close).
    async fn recv(&self) -> Result<ReceivedEvent>;

    /// Commits a checkpoint for the group. Fails with [`ErrorKind::Conflict`] when this member
    /// no longer owns the partition (another member took it over in a rebalance).
    async fn commit(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// Partitions currently owned by this member.
    async fn assignment(&self) -> Result<Vec<PartitionId>>;

    /// Leaves the group; its partitions move to the remaining members.
    async fn close(&self) -> Result<()>;
}

/// Reads one partition from a start position, outside any consumer group.
#[async_trait]
pub trait PartitionReader: Send + Sync + std::fmt::Debug {
    /// Hub being read.
    fn hub(&self) -> &str;

    /// Partition being read.
    fn partition(&self) -> PartitionId;

    /// Waits for the next event.
    async fn recv(&self) -> Result<ReceivedEvent>;

    /// Stops reading. Later calls fail with [`ErrorKind::Closed`].
    async fn close(&self) -> Result<()>;
}

/// Options for [`crate::Backend::partition_reader`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderOptions {
    /// Partition to read.
    pub partition: PartitionId,
    /// Where to start.
    pub start: StartPosition,
    /// Consumer group to read as, where the service needs one (Event Hubs); default `$Default`.
    pub group: Option<String>,
}

impl ReaderOptions {
    /// Reads `partition` from `start`.
    pub fn new(partition: PartitionId, start: StartPosition) -> Self {
        Self {
            partition,
            start,
            group: None,
        }
    }
}

/// Turns a consumer into a [`Stream`](futures::Stream) of events that ends after the consumer
/// was closed.
///
/// ```
/// # use evhub_core::{*, memory::MemoryBackend};
/// # use futures::StreamExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> evhub_core::Result<()> {
/// let hub = MemoryBackend::new(Default::default());
/// hub.create_hub("orders", HubOptions::with_partitions(2)).await?;
/// hub.producer("orders").await?.send(Event::new("one")).await?;
/// let consumer = hub.consumer("orders", ConsumerOptions::new("billing")).await?;
/// let mut events = event_stream(consumer.clone());
/// let first = events.next().await.expect("stream ended")?;
/// assert_eq!(&first.payload[..], b"one");
/// # Ok(()) }
/// ```
pub fn event_stream(consumer: Arc<dyn Consumer>) -> BoxStream<'static, Result<ReceivedEvent>> {
    Box::pin(futures::stream::unfold(consumer, |consumer| async move {
        match consumer.recv().await {
            Err(e) if e.kind() == ErrorKind::Closed => None,
            item => Some((item, consumer)),
        }
    }))
}
