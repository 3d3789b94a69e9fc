//! State of one consumer-group member shared by its poll driver, its rebalance callbacks and
//! the application's `recv` calls: which partitions it owns, the hand-over queue of fetched
//! events, and checkpoints whose commit is in flight.
//!
//! One mutex guards the queue and the ownership map, so a revocation removes the partition and
//! its queued events in one step: once the revocation callback returned, no event of the
//! partition can be handed out. The driver converts and queues a whole fetched batch under one
//! lock; `recv` takes one event and `recv_batch` many under one lock each.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use evhub_core::{Error, ErrorKind, InitialPosition, PartitionId, ReceivedEvent};
use tokio::sync::Notify;

use crate::util::lock;

/// Above either bound the driver stops moving fetched events into the queue until it drained
/// below half of both; when that takes longer than `driver::PAUSE_AFTER` (500 ms) it pauses
/// fetching (see [`GroupState::wait_for_room`]). The bounds match librdkafka's own default
/// prefetch bound (`queued.max.messages.kbytes`, 64 MiB).
const HIGH_EVENTS: usize = 64 * 1024;
const HIGH_BYTES: usize = 64 << 20;

/// What a group member needs to know about its group; shared with its rebalance callbacks.
#[derive(Debug)]
pub(crate) struct GroupState {
    pub hub: Arc<str>,
    /// Where partitions without a checkpoint start.
    pub initial: InitialPosition,
    /// Bound for the broker requests made inside a rebalance callback.
    pub request_timeout: Duration,
    queue: Mutex<Queue>,
    /// Bumped (under the queue lock) by every assignment and revocation.
    revision: AtomicU64,
    /// Events (or the end) became available.
    ready: Notify,
    /// The queue drained below the resume mark, or the member ended (the driver waits on it
    /// before it pauses fetching).
    room: Condvar,
    /// Checkpoints asked for but not yet confirmed by the broker: Kafka offset to commit
    /// (event offset + 1) per partition.
    pending: Mutex<HashMap<PartitionId, i64>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// One ring for all partitions, in fetch order; it keeps its capacity, so a steady stream
    /// allocates nothing here.
    events: VecDeque<ReceivedEvent>,
    bytes: usize,
    /// Indexed by partition id: `Some` while owned.
    owned: Vec<Option<Owned>>,
    /// Set by the driver when it paused fetching; cleared (and the driver woken) when the
    /// queue drains below the resume mark.
    paused: bool,
    /// The driver waits on `room` for the queue to drain.
    waiting: bool,
    end: Option<End>,
}

#[derive(Debug, Clone, Copy)]
struct Owned {
    /// Revision of the assignment that gave us the partition.
    since: u64,
    /// Highest offset handed to the application since.
    delivered: Option<i64>,
}

/// Why no more events come: returned, after the queued events, by every later call.
#[derive(Debug)]
struct End {
    kind: ErrorKind,
    message: String,
    first: Option<Error>,
}

impl End {
    fn error(&mut self) -> Error {
        self.first
            .take()
            .unwrap_or_else(|| Error::new(self.kind, self.message.clone()))
    }
}

fn event_bytes(e: &ReceivedEvent) -> usize {
    e.payload.len() + e.key.as_ref().map_or(0, |k| k.len())
}

impl Queue {
    fn owned_mut(&mut self, partition: PartitionId) -> Option<&mut Owned> {
        self.owned.get_mut(partition as usize)?.as_mut()
    }

    fn full(&self) -> bool {
        self.events.len() >= HIGH_EVENTS || self.bytes >= HIGH_BYTES
    }

    fn low(&self) -> bool {
        self.events.len() <= HIGH_EVENTS / 2 && self.bytes <= HIGH_BYTES / 2
    }

    fn taken(&mut self, e: &ReceivedEvent) {
        self.bytes -= event_bytes(e);
        if let Some(owned) = self.owned_mut(e.partition) {
            owned.delivered = Some(owned.delivered.map_or(e.offset, |d| d.max(e.offset)));
        }
    }
}

/// Outcome of taking from the queue.
pub(crate) enum Taken<T> {
    Ready(T),
    Ended(Error),
    Empty,
}

impl GroupState {
    pub fn new(hub: Arc<str>, initial: InitialPosition, request_timeout: Duration) -> Self {
        Self {
            hub,
            initial,
            request_timeout,
            queue: Mutex::default(),
            revision: AtomicU64::new(0),
            ready: Notify::new(),
            room: Condvar::new(),
            pending: Mutex::default(),
        }
    }

    /// Current assignment revision; the driver reads it right after polling a batch's first
    /// message.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Moves a fetched batch whose first message was polled at `revision` into the queue
    /// (leaving `batch` empty, its allocation kept for the next batch), dropping events of
    /// partitions revoked since. Returns whether the queue is now above the pause mark.
    pub fn push(&self, batch: &mut Vec<ReceivedEvent>, revision: u64) -> bool {
        let full = {
            let mut q = lock(&self.queue);
            if self.revision() != revision {
                batch.retain(|e| {
                    q.owned
                        .get(e.partition as usize)
                        .copied()
                        .flatten()
                        .is_some_and(|o| o.since <= revision)
                });
            }
            if q.end.is_none() {
                q.bytes += batch.iter().map(event_bytes).sum::<usize>();
                q.events.extend(batch.drain(..));
            } else {
                batch.clear();
            }
            q.full()
        };
        self.ready.notify_waiters();
        full
    }

    /// The driver paused fetching because the queue is full.
    pub fn set_paused(&self) {
        let mut q = lock(&self.queue);
        q.paused = !q.low();
    }

    /// Whether fetching should stay paused: false once the queue drained below the resume mark
    /// (by the application, or by a revocation) or the member ended.
    pub fn still_paused(&self) -> bool {
        lock(&self.queue).paused
    }

    /// Waits up to `limit` for the application to drain the queue below the resume mark (or
    /// the member to end); returns whether it did. The driver calls it when the queue is full,
    /// before it pauses fetching: librdkafka drops what it prefetched for paused partitions
    /// and, after `resume`, fetches again only when its broker thread next wakes up (up to
    /// 1 s later), so an application that is merely slower than the fetcher must not cause a
    /// pause.
    pub fn wait_for_room(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut q = lock(&self.queue);
        loop {
            if q.low() || q.end.is_some() {
                q.waiting = false;
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                q.waiting = false;
                return false;
            }
            q.waiting = true;
            q = self
                .room
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn after_take(&self, q: &mut Queue) {
        if q.paused && q.low() {
            q.paused = false;
        }
        if q.waiting && q.low() {
            q.waiting = false;
            self.room.notify_all();
        }
    }

    /// The next queued event, without waiting.
    pub fn take(&self) -> Taken<ReceivedEvent> {
        let mut q = lock(&self.queue);
        match q.events.pop_front() {
            Some(event) => {
                q.taken(&event);
                self.after_take(&mut q);
                Taken::Ready(event)
            }
            None => match q.end.as_mut() {
                Some(end) => Taken::Ended(end.error()),
                None => Taken::Empty,
            },
        }
    }

    /// Up to `max` queued events in order, without waiting, in a `Vec` allocated by the calling
    /// thread (which will also free it).
    pub fn take_batch(&self, max: usize) -> Taken<Vec<ReceivedEvent>> {
        let mut q = lock(&self.queue);
        let n = max.min(q.events.len());
        if n == 0 {
            return match q.end.as_mut() {
                Some(end) => Taken::Ended(end.error()),
                None => Taken::Empty,
            };
        }
        let out: Vec<ReceivedEvent> = q.events.drain(..n).collect();
        for e in &out {
            q.taken(e);
        }
        self.after_take(&mut q);
        Taken::Ready(out)
    }

    /// A future that completes after the next [`push`](Self::push) or end; enable it before
    /// checking the queue so that no wake-up is missed.
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Ends the member with `err` after the queued events (fatal client errors).
    pub fn fail(&self, err: Error) {
        let mut q = lock(&self.queue);
        if q.end.is_none() {
            q.end = Some(End {
                kind: err.kind(),
                message: err.message().to_owned(),
                first: Some(err),
            });
        }
        drop(q);
        self.ready.notify_waiters();
        self.room.notify_all();
    }

    /// Ends the member now: queued events are dropped, every later call is `Closed`.
    pub fn close(&self) {
        let mut q = lock(&self.queue);
        q.events.clear();
        q.bytes = 0;
        let closed = Error::closed("consumer");
        q.end = Some(End {
            kind: closed.kind(),
            message: closed.message().to_owned(),
            first: None,
        });
        q.paused = false;
        drop(q);
        self.ready.notify_waiters();
        self.room.notify_all();
    }

    /// Partitions newly owned (assignment callback).
    pub fn assigned(&self, partitions: &[PartitionId]) {
        let mut q = lock(&self.queue);
        let since = self.revision.fetch_add(1, Ordering::AcqRel) + 1;
        for &p in partitions {
            let i = p as usize;
            if q.owned.len() <= i {
                q.owned.resize(i + 1, None);
            }
            q.owned[i] = Some(Owned {
                since,
                delivered: None,
            });
        }
    }

    /// Partitions taken away (revocation callback): forgets them and drops their queued
    /// events in the same step.
    pub fn revoked(&self, partitions: &[PartitionId]) {
        let mut q = lock(&self.queue);
        self.revision.fetch_add(1, Ordering::AcqRel);
        for &p in partitions {
            if let Some(slot) = q.owned.get_mut(p as usize) {
                *slot = None;
            }
        }
        let had = q.events.len();
        if had > 0 {
            q.events.retain(|e| !partitions.contains(&e.partition));
            if q.events.len() != had {
                q.bytes = q.events.iter().map(event_bytes).sum();
                tracing::debug!(hub = %self.hub, dropped = had - q.events.len(), "dropped queued events of revoked partitions");
            }
        }
        self.after_take(&mut q);
    }

    /// Whether `partition` is owned now.
    pub fn owns(&self, partition: PartitionId) -> bool {
        lock(&self.queue)
            .owned
            .get(partition as usize)
            .is_some_and(Option::is_some)
    }

    /// Owned partitions, ascending.
    pub fn assignment(&self) -> Vec<PartitionId> {
        lock(&self.queue)
            .owned
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_some())
            .filter_map(|(p, _)| PartitionId::try_from(p).ok())
            .collect()
    }

    /// Highest offset of `partition` handed to the application in its current assignment.
    pub fn max_delivered(&self, partition: PartitionId) -> Option<i64> {
        lock(&self.queue)
            .owned
            .get(partition as usize)
            .copied()
            .flatten()
            .and_then(|o| o.delivered)
    }

    /// Records a checkpoint about to be committed.
    pub fn add_pending(&self, partition: PartitionId, next_offset: i64) {
        let mut pending = lock(&self.pending);
        let entry = pending.entry(partition).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    /// Drops a pending checkpoint once the broker confirmed it (or a newer one).
    pub fn confirm(&self, partition: PartitionId, next_offset: i64) {
        let mut pending = lock(&self.pending);
        if pending.get(&partition).is_some_and(|o| *o <= next_offset) {
            pending.remove(&partition);
        }
    }

    /// Pending checkpoints of `partitions` (all when `None`), removing them.
    pub fn take_pending(&self, partitions: Option<&[PartitionId]>) -> Vec<(PartitionId, i64)> {
        let mut pending = lock(&self.pending);
        let keys: Vec<PartitionId> = match partitions {
            Some(ps) => ps
                .iter()
                .copied()
                .filter(|p| pending.contains_key(p))
                .collect(),
            None => pending.keys().copied().collect(),
        };
        keys.into_iter()
            .filter_map(|p| pending.remove(&p).map(|o| (p, o)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
