//! Hub state: partition logs, consumer groups and the notifications that wake waiters.

use std::collections::{HashMap, VecDeque};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::OverflowPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, Headers, PartitionId, ReceivedEvent};
use crate::metadata::PartitionProperties;
use crate::position::StartPosition;

use super::group::GroupState;

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical section
/// here leaves the state consistent before anything that could panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
pub(crate) struct StoredEvent {
    key: Option<Bytes>,
    payload: Bytes,
    headers: Headers,
    enqueued_at: SystemTime,
}

#[derive(Debug, Default)]
struct Log {
    /// Offset of `events[0]`.
    begin: i64,
    events: VecDeque<StoredEvent>,
    last_enqueued_at: Option<SystemTime>,
}

impl Log {
    fn end(&self) -> i64 {
        self.begin + self.events.len() as i64
    }
}

/// Limits that apply to every partition of a hub.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub capacity: usize,
    pub overflow: OverflowPolicy,
    pub send_timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct HubState {
    pub name: Arc<str>,
    pub created_at: SystemTime,
    logs: Vec<Mutex<Log>>,
    pub groups: Mutex<HashMap<String, Arc<GroupState>>>,
    /// Woken after every append.
    pub data: Notify,
    /// Woken after commits, so blocked producers can evict.
    pub space: Notify,
    limits: Limits,
}

impl HubState {
    pub fn new(name: Arc<str>, partitions: u32, limits: Limits) -> Self {
        Self {
            name,
            created_at: SystemTime::now(),
            logs: (0..partitions)
                .map(|_| Mutex::new(Log::default()))
                .collect(),
            groups: Mutex::new(HashMap::new()),
            data: Notify::new(),
            space: Notify::new(),
            limits,
        }
    }

    pub fn partition_count(&self) -> u32 {
        self.logs.len() as u32
    }

    fn log(&self, partition: PartitionId) -> Result<&Mutex<Log>> {
        self.logs.get(partition as usize).ok_or_else(|| {
            Error::not_found(format!(
                "hub `{}` has no partition {partition} (it has {})",
                self.name,
                self.logs.len()
            ))
        })
    }

    /// The group, created on first use.
    pub fn group(&self, name: &str) -> Arc<GroupState> {
        lock(&self.groups)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(GroupState::new(self.partition_count())))
            .clone()
    }

    /// Lowest offset some consumer group still needs on `partition`; `None` without groups.
    fn needed_from(&self, partition: PartitionId) -> Option<i64> {
        lock(&self.groups)
            .values()
            .map(|g| g.committed_or_floor(partition))
            .min()
    }

    /// Appends events to one partition, waiting for room under the `block` policy.
    /// Returns the offset of the first event.
    pub async fn append(&self, partition: PartitionId, events: Vec<Event>) -> Result<i64> {
        let log = self.log(partition)?;
        let count = events.len();
        let deadline = tokio::time::Instant::now() + self.limits.send_timeout;
        let mut events = Some(events);
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let needed = self.needed_from(partition);
            {
                let mut log = lock(log);
                self.evict(&mut log, needed, count);
                let room = self.limits.capacity.saturating_sub(log.events.len());
                if room >= count || self.limits.overflow == OverflowPolicy::DropOldest {
                    let first = log.end();
                    let now = SystemTime::now();
                    for event in events.take().into_iter().flatten() {
                        log.events.push_back(StoredEvent {
                            key: event.key,
                            payload: event.payload,
                            headers: event.headers,
                            enqueued_at: now,
                        });
                    }
                    while log.events.len() > self.limits.capacity {
                        log.events.pop_front();
                        log.begin += 1;
                    }
                    log.last_enqueued_at = Some(now);
                    drop(log);
                    self.data.notify_waiters();
                    return Ok(first);
                }
                if count > self.limits.capacity {
                    return Err(Error::invalid_input(format!(
                        "a batch of {count} events cannot fit a partition that holds {}",
                        self.limits.capacity
                    )));
                }
            }
            if tokio::time::timeout_at(deadline, space).await.is_err() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "partition {partition} of hub `{}` is full ({} events) and consumer groups have not committed past its oldest event",
                        self.name, self.limits.capacity
                    ),
                ));
            }
        }
    }

    /// Drops events no consumer group needs any more, while the partition lacks room for `incoming`.
    fn evict(&self, log: &mut Log, needed_from: Option<i64>, incoming: usize) {
        let limit = needed_from.unwrap_or(i64::MAX);
        while log.events.len() + incoming > self.limits.capacity && log.begin < limit {
            if log.events.pop_front().is_none() {
                break;
            }
            log.begin += 1;
        }
    }

    /// Copies up to `max` events starting at `*position` into `out`, advancing the position.
    /// A position before the oldest retained event moves to it.
    pub fn read(
        &self,
        partition: PartitionId,
        position: &mut i64,
        max: usize,
        out: &mut impl Extend<ReceivedEvent>,
    ) -> Result<usize> {
        let log = lock(self.log(partition)?);
        if *position < log.begin {
            *position = log.begin;
        }
        let start = usize::try_from(*position - log.begin).unwrap_or(usize::MAX);
        let first = *position;
        let (a, b) = log.events.as_slices();
        let events = tail(a, start)
            .iter()
            .chain(tail(b, start.saturating_sub(a.len())))
            .take(max);
        let mut read = 0;
        out.extend(events.map(|stored| {
            read += 1;
            ReceivedEvent {
                hub: self.name.clone(),
                partition,
                offset: first + read - 1,
                service_offset: None,
                enqueued_at: Some(stored.enqueued_at),
                key: stored.key.clone(),
                payload: stored.payload.clone(),
                headers: stored.headers.clone(),
            }
        }));
        *position = first + read;
        Ok(read as usize)
    }

    /// Resolves a start position to an offset.
    pub fn resolve(&self, partition: PartitionId, start: &StartPosition) -> Result<i64> {
        let log = lock(self.log(partition)?);
        Ok(match start {
            StartPosition::Earliest => log.begin,
            StartPosition::Latest => log.end(),
            StartPosition::Offset(o) => (*o).clamp(log.begin, log.end()),
            StartPosition::After(o) => o.saturating_add(1).clamp(log.begin, log.end()),
            StartPosition::Time(t) => {
                let idx = log.events.partition_point(|e| e.enqueued_at < *t);
                log.begin + idx as i64
            }
        })
    }

    pub fn properties(&self, partition: PartitionId) -> Result<PartitionProperties> {
        let log = lock(self.log(partition)?);
        Ok(PartitionProperties {
            hub: self.name.to_string(),
            partition,
            begin_offset: log.begin,
            end_offset: log.end(),
            last_enqueued_at: log.last_enqueued_at,
        })
    }

    /// Offset one past the last event of `partition`.
    pub fn end_offset(&self, partition: PartitionId) -> Result<i64> {
        Ok(lock(self.log(partition)?).end())
    }
}

/// `slice[skip..]`, empty when `skip` is past the end.
fn tail<T>(slice: &[T], skip: usize) -> &[T] {
    slice.get(skip.min(slice.len())..).unwrap_or(&[])
}
