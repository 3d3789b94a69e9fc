//! The consumer-group member and partition reader traits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result};
use crate::event::Checkpoint;
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
/// A commit that arrives after its partition moved to another member is a normal event in any
/// consumer group: [`commit`](Consumer::commit) returns [`CommitOutcome::NotOwned`] (logged as a
/// `tracing` event and counted in [`crate::group::commits_skipped`]) instead of an error, so the
/// obvious loop keeps running through rebalances:
///
/// ```
/// # use evhub_core::{memory::MemoryBackend, *};
/// use evhub_core::checkpoint::last_per_partition;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> evhub_core::Result<()> {
/// # let hub = MemoryBackend::default();
/// # hub.create_hub("orders", HubOptions::with_partitions(2)).await?;
/// # hub.producer("orders").await?.send(Event::new("one")).await?;
/// let consumer = hub.consumer("orders", ConsumerOptions::new("billing")).await?;
/// # for _ in 0..2 {
/// // loop {
///     let batch = consumer.recv_batch(500, Duration::from_millis(100)).await?;
///     for event in &batch {
///         // process(event)?
///     }
///     // The last event of each partition covers the earlier ones (the commit rule).
///     for checkpoint in last_per_partition(&batch) {
///         consumer.commit(&checkpoint).await?; // NotOwned after a rebalance: keep going
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Contract for implementations: group membership and rebalances proceed in the background,
/// not only while `recv` is awaited (a slow application never stalls the group); after a
/// partition is revoked, no further event of it is returned by `recv` or `recv_batch`; `recv`
/// and `recv_batch` are cancel-safe (dropping their future loses no event), so they can be used
/// in `select!` and under timeouts; an error that ends the member (closed, auth, hub deleted)
/// is returned again by every later call; dropping a member leaves the group.
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

    /// Waits at most `wait` for the first event, then returns it together with up to `max - 1`
    /// more events that are already fetched, without waiting for more. Returns an empty batch
    /// when nothing arrived within `wait`. Events of one partition are in order; a batch never
    /// holds an event of a partition that was revoked before the batch was returned.
    ///
    /// The default body calls [`recv`](Self::recv); backends override it to hand over what they
    /// already fetched in one step.
    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        collect_batch(max, wait, || self.recv()).await
    }

    /// Commits a checkpoint for the group: `checkpoint`'s event and every earlier event of its
    /// partition are processed.
    ///
    /// Returns [`CommitOutcome::NotOwned`] when this member no longer owns the partition
    /// (another member took it over in a rebalance; it resumes from the group's last stored
    /// checkpoint, so the events are delivered again there — at-least-once). Fails with
    /// [`ErrorKind::InvalidInput`] for a checkpoint of another hub or beyond the partition's end.
    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome>;

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

    /// Waits at most `wait` for the first event, then returns it together with up to `max - 1`
    /// more events that are already fetched. Empty when nothing arrived within `wait`.
    /// Cancel-safe, like [`recv`](Self::recv).
    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        collect_batch(max, wait, || self.recv()).await
    }

    /// Stops reading. Later calls fail with [`ErrorKind::Closed`].
    async fn close(&self) -> Result<()>;
}

/// What became of a [`Consumer::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommitOutcome {
    /// The checkpoint is stored for the group.
    Committed,
    /// The partition moved to another member before the commit; nothing was stored. Its new
    /// owner resumes after the group's last stored checkpoint, so events after it are
    /// delivered again there. Expected during rebalances; keep consuming.
    NotOwned,
}

impl CommitOutcome {
    /// Whether the checkpoint was stored.
    pub fn is_committed(self) -> bool {
        self == Self::Committed
    }
}

/// The backend-independent body of `recv_batch`: the first event within `wait`, then what the
/// next `recv` calls return without waiting. Relies on `recv` being cancel-safe (a pending
/// `recv` future is dropped without losing an event) and on ending errors being sticky.
async fn collect_batch<F, Fut>(
    max: usize,
    wait: Duration,
    mut recv: F,
) -> Result<Vec<ReceivedEvent>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ReceivedEvent>> + Send,
{
    if max == 0 {
        return Ok(Vec::new());
    }
    let first = match tokio::time::timeout(wait, recv()).await {
        Ok(event) => event?,
        Err(_) => return Ok(Vec::new()),
    };
    let mut batch = Vec::with_capacity(max.min(1024));
    batch.push(first);
    while batch.len() < max {
        match recv().now_or_never() {
            Some(Ok(event)) => batch.push(event),
            // Ending errors are sticky: the next call reports it; the batch in hand is returned.
            Some(Err(_)) | None => break,
        }
    }
    Ok(batch)
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
