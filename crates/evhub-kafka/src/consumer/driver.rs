//! The poll thread of a group member.
//!
//! librdkafka runs rebalance callbacks and enforces `max.poll.interval.ms` only through the
//! application's polls, so one thread per member polls all the time, also while the
//! application is busy: it converts what is fetched in batches, queues them in the member's
//! [`GroupState`]. When the queue is full it waits up to [`PAUSE_AFTER`] for the application to
//! drain it; an application that is still stuck then gets the assigned partitions paused
//! (librdkafka drops what it prefetched for them and fetches it again after `resume`) while the
//! thread keeps polling, so rebalances, heartbeats and leaving the group never wait for the
//! application longer than that.
//!
//! The thread owns the librdkafka consumer: when it stops, it commits checkpoints still in
//! flight and leaves the group (which blocks on the broker) off the async runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evhub_core::{Error, ErrorKind};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use crate::context::EvhubContext;
use crate::convert::{self, buffered_len, BufferPool, HubNames, BATCH_BYTES, BATCH_EVENTS};
use crate::error::map_kafka_error;
use crate::group::GroupState;

pub(crate) type Member = BaseConsumer<EvhubContext>;

/// Poll wait while fetching: a fetched message ends it at once; bounds how late `stop` is seen.
const POLL: Duration = Duration::from_millis(100);
/// Poll wait while paused: how soon fetching resumes after the application drained the queue.
const PAUSED_POLL: Duration = Duration::from_millis(2);
/// How long a full queue waits for the application before fetching is paused. Meanwhile
/// nothing is polled, so rebalance callbacks wait at most this long; librdkafka keeps its own
/// prefetch (bounded by `queued.max.messages.kbytes`) and heartbeats going.
const PAUSE_AFTER: Duration = Duration::from_millis(500);

/// Starts the poll thread. `done` fires when the member left the group.
pub(crate) fn spawn(
    consumer: Arc<Member>,
    group: Arc<GroupState>,
    stop: Arc<AtomicBool>,
    done: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("evhub-kafka-{}", group.hub))
        .spawn(move || {
            // However the thread ends, `recv` must not wait for events that never come.
            let _ended = EndOnExit(&group);
            poll_until_stopped(&consumer, &group, &stop);
            leave(consumer, &group);
            let _ = done.send(());
        })
        .map(drop)
}

fn poll_until_stopped(consumer: &Member, group: &GroupState, stop: &AtomicBool) {
    // The assignment revision at which fetching was paused.
    let mut paused_at: Option<u64> = None;
    let mut messages: Vec<BorrowedMessage<'_>> = Vec::with_capacity(BATCH_EVENTS);
    let mut hubs = HubNames::new(&group.hub);
    let buffers = Arc::new(BufferPool::default());
    let mut events = Vec::with_capacity(BATCH_EVENTS);
    // The assignment revision whose partitions were last resumed: librdkafka keeps a
    // partition paused across a revocation and a new assignment, so partitions assigned while
    // (or after) fetching was paused are resumed explicitly.
    let mut resumed_at = group.revision();
    while !stop.load(Ordering::Acquire) {
        if paused_at.is_some() && !group.still_paused() {
            paused_at = None;
            resumed_at = u64::MAX;
        }
        if paused_at.is_none() && resumed_at != group.revision() {
            resumed_at = group.revision();
            set_paused(consumer, group, false);
        }
        let Some(first) = consumer.poll(if paused_at.is_some() {
            PAUSED_POLL
        } else {
            POLL
        }) else {
            continue;
        };
        // Rebalance callbacks run inside `poll`, and a poll that ran one returns no message:
        // every message of this batch was fetched under this revision.
        let revision = group.revision();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(m) => {
                    bytes += buffered_len(&m);
                    messages.push(m);
                }
                Err(e) => on_error(group, e),
            }
            if messages.len() < BATCH_EVENTS && bytes < BATCH_BYTES {
                next = consumer.poll(Duration::ZERO);
            }
        }
        if messages.is_empty() {
            continue;
        }
        convert::events_into(hubs.next(), &messages, &buffers, &mut events);
        messages.clear();
        tracing::trace!(hub = %group.hub, events = events.len(), "fetched batch");
        let full = group.push(&mut events, revision);
        // A slower application: wait for room instead of pausing, which would cost librdkafka's
        // prefetch and up to a second before fetching restarts.
        if full && paused_at.is_none() && group.wait_for_room(PAUSE_AFTER) {
            continue;
        }
        if full && paused_at != Some(group.revision()) {
            set_paused(consumer, group, true);
            group.set_paused();
            paused_at = Some(group.revision());
        }
    }
}

/// Pauses or resumes every assigned partition.
fn set_paused(consumer: &Member, group: &GroupState, pause: bool) {
    let result = consumer.assignment().and_then(|assigned| {
        if pause {
            consumer.pause(&assigned)
        } else {
            consumer.resume(&assigned)
        }
    });
    match result {
        Ok(()) => tracing::debug!(hub = %group.hub, pause, "fetching paused/resumed"),
        Err(e) => tracing::warn!(hub = %group.hub, pause, "pausing/resuming fetching failed: {e}"),
    }
}

/// Transient fetch problems are retried by librdkafka itself; an error that ends the member
/// (authentication, hub deleted) ends it for the application, after the queued events.
fn on_error(group: &GroupState, e: KafkaError) {
    let err = map_kafka_error("consuming", e);
    match err.kind() {
        ErrorKind::Auth | ErrorKind::NotFound | ErrorKind::Config => {
            tracing::warn!(hub = %group.hub, "consumer ends: {err}");
            group.fail(err);
        }
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Other => {
            tracing::debug!(hub = %group.hub, "consumer: {err}")
        }
        _ => tracing::warn!(hub = %group.hub, "consumer: {err}"),
    }
}

/// Commits what is still in flight, then leaves the group (the revocation callback runs during
/// the close) so the partitions move to the other members at once.
fn leave(consumer: Arc<Member>, group: &GroupState) {
    let hub = &*group.hub;
    let pending = group.take_pending(None);
    if !pending.is_empty() {
        let mut list = TopicPartitionList::new();
        for (p, next) in &pending {
            let _ = list.add_partition_offset(hub, *p as i32, Offset::Offset(*next));
        }
        if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(hub = %hub, "final commit failed: {e}");
        }
    }
    consumer.unsubscribe();
    // The last handle closes the librdkafka consumer (LeaveGroup); a commit still running on
    // a blocking thread may hold the last one instead.
    drop(consumer);
    tracing::debug!(hub = %hub, "poll thread ended");
}

/// Ends the member for the application when the poll thread ends (a no-op after `close`,
/// which ended it already; the error for a thread that panicked).
struct EndOnExit<'a>(&'a GroupState);

impl Drop for EndOnExit<'_> {
    fn drop(&mut self) {
        self.0.fail(Error::new(
            ErrorKind::Other,
            "the consumer's poll thread ended unexpectedly",
        ));
    }
}

/// The error for a member whose poll thread could not be started.
pub(crate) fn spawn_failed(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("starting the consumer's poll thread failed: {e}"),
    )
    .with_source(e)
}
