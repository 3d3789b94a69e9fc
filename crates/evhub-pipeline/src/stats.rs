//! Pipeline counters and per-partition progress, readable while the pipeline runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use evhub_core::PartitionId;

/// A live view of a pipeline's counters; clones share them. Get it from
/// [`Pipeline::stats`](crate::Pipeline::stats) before [`run`](crate::Pipeline::run).
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    first_event: OnceLock<Instant>,
    received: AtomicU64,
    handled: AtomicU64,
    skipped: AtomicU64,
    produced: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    committed: AtomicU64,
    commits_not_owned: AtomicU64,
    in_flight: AtomicU64,
    partitions: Mutex<BTreeMap<PartitionId, PartitionSnapshot>>,
    stopped: Mutex<Vec<StoppedPartition>>,
}

/// Counters at one moment.
///
/// `received` source events end up `handled` (decision `Done`/`Emit` carried out), `skipped`,
/// `dead_lettered`, still `in_flight`, or abandoned (partition revoked, pipeline stopped before
/// they finished — they are delivered again, never committed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Source events received from the consumer group.
    pub received: u64,
    /// Source events whose decision (`Done` or `Emit`) was carried out.
    pub handled: u64,
    /// Source events the handler skipped.
    pub skipped: u64,
    /// Events acknowledged by sinks.
    pub produced: u64,
    /// Retries (handler calls or sink sends repeated after a retriable error).
    pub retried: u64,
    /// Source events written to the dead-letter hub.
    pub dead_lettered: u64,
    /// Source checkpoints stored.
    pub committed: u64,
    /// Commits answered with `NotOwned` (the partition moved in a rebalance).
    pub commits_not_owned: u64,
    /// Source events received and not finished yet.
    pub in_flight: u64,
    /// Per-partition progress and lag, ascending by partition.
    pub partitions: Vec<PartitionSnapshot>,
    /// Partitions stopped by an event that failed without a dead-letter hub.
    pub stopped: Vec<StoppedPartition>,
    /// Time since the pipeline was built.
    pub elapsed: Duration,
    /// Time from building the pipeline to its first source event (group join included).
    pub first_event_after: Option<Duration>,
}

/// Progress of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// Partition.
    pub partition: PartitionId,
    /// Whether this member owned it at the last check.
    pub owned: bool,
    /// Source events received from it.
    pub received: u64,
    /// Offset of the last committed checkpoint.
    pub committed_offset: Option<i64>,
    /// End offset (next offset to be written) at the last lag check, where the backend reports it.
    pub end_offset: Option<i64>,
    /// Events after the committed position (or after the first event received in this run) at
    /// the last check; `None` until this member committed or received something there.
    pub lag: Option<u64>,
}

/// A partition the pipeline stopped on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedPartition {
    /// Partition.
    pub partition: PartitionId,
    /// Offset of the event that failed; the checkpoint stays before it.
    pub offset: i64,
    /// Why (error kind and message).
    pub error: String,
}

impl StatsSnapshot {
    /// Handled events per second since the pipeline was built.
    pub fn handled_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.handled + self.skipped + self.dead_lettered) as f64 / secs
        } else {
            0.0
        }
    }

    /// Settled events per second since the first source event (group join excluded).
    pub fn rate_since_first_event(&self) -> f64 {
        let busy = self
            .first_event_after
            .map_or(Duration::ZERO, |first| self.elapsed.saturating_sub(first));
        if busy.is_zero() {
            0.0
        } else {
            (self.handled + self.skipped + self.dead_lettered) as f64 / busy.as_secs_f64()
        }
    }

    /// Total lag over partitions that report one.
    pub fn total_lag(&self) -> Option<u64> {
        let lags: Vec<u64> = self.partitions.iter().filter_map(|p| p.lag).collect();
        (!lags.is_empty()).then(|| lags.iter().sum())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Handled,
    Skipped,
    Produced,
    Retried,
    DeadLettered,
    Committed,
    CommitsNotOwned,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                first_event: OnceLock::new(),
                received: AtomicU64::new(0),
                handled: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                produced: AtomicU64::new(0),
                retried: AtomicU64::new(0),
                dead_lettered: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                commits_not_owned: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                partitions: Mutex::new(BTreeMap::new()),
                stopped: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let i = &self.inner;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&i.received),
            handled: get(&i.handled),
            skipped: get(&i.skipped),
            produced: get(&i.produced),
            retried: get(&i.retried),
            dead_lettered: get(&i.dead_lettered),
            committed: get(&i.committed),
            commits_not_owned: get(&i.commits_not_owned),
            in_flight: get(&i.in_flight),
            partitions: lock(&i.partitions).values().cloned().collect(),
            stopped: lock(&i.stopped).clone(),
            elapsed: i.started.elapsed(),
            first_event_after: i.first_event.get().map(|t| t.duration_since(i.started)),
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let i = &self.inner;
        let c = match counter {
            Counter::Handled => &i.handled,
            Counter::Skipped => &i.skipped,
            Counter::Produced => &i.produced,
            Counter::Retried => &i.retried,
            Counter::DeadLettered => &i.dead_lettered,
            Counter::Committed => &i.committed,
            Counter::CommitsNotOwned => &i.commits_not_owned,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.inner.in_flight.store(n as u64, Ordering::Relaxed);
    }

    /// Counts received events: `(partition, count)` pairs of one batch.
    pub(crate) fn received(&self, counts: &[(PartitionId, u64)]) {
        self.inner.first_event.get_or_init(Instant::now);
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        self.inner.received.fetch_add(total, Ordering::Relaxed);
        let mut parts = lock(&self.inner.partitions);
        for &(partition, n) in counts {
            let p = parts.entry(partition).or_insert_with(|| PartitionSnapshot {
                partition,
                owned: true,
                ..PartitionSnapshot::default()
            });
            p.received += n;
        }
    }

    pub(crate) fn committed(&self, partition: PartitionId, offset: i64) {
        self.add(Counter::Committed, 1);
        let mut parts = lock(&self.inner.partitions);
        let p = parts.entry(partition).or_default();
        p.partition = partition;
        p.committed_offset = Some(offset);
        if let Some(end) = p.end_offset {
            p.lag = Some(u64::try_from(end - (offset + 1)).unwrap_or(0));
        }
    }

    pub(crate) fn set_owned(&self, owned: &[PartitionId]) {
        let mut parts = lock(&self.inner.partitions);
        for &p in owned {
            parts.entry(p).or_insert_with(|| PartitionSnapshot {
                partition: p,
                ..PartitionSnapshot::default()
            });
        }
        for (p, snap) in parts.iter_mut() {
            snap.owned = owned.contains(p);
        }
    }

    /// Records the end offset of `partition`; `first_received` is where the pipeline started
    /// reading it when nothing was committed yet.
    pub(crate) fn end_offset(&self, partition: PartitionId, end: i64, first_received: Option<i64>) {
        let mut parts = lock(&self.inner.partitions);
        let p = parts.entry(partition).or_default();
        p.partition = partition;
        p.end_offset = Some(end);
        let position = p.committed_offset.map(|c| c + 1).or(first_received);
        p.lag = position.map(|pos| u64::try_from(end - pos).unwrap_or(0));
    }

    pub(crate) fn stopped(&self, stop: StoppedPartition) {
        lock(&self.inner.stopped).push(stop);
    }
}
