//! Partition logs: the events of one partition with their sequence numbers,
//! offsets and enqueued times; in memory, or in segment files under the data
//! directory so a restart keeps them.
//!
//! Memory stays bounded: every log keeps a small index entry per retained
//! event (24 bytes) and caches whole events only within the emulator-wide
//! [`MemoryBudget`]. With segment files, older events are read back from disk
//! when a reader reaches them; start-up scans the files record by record and
//! loads no event into memory.
//!
//! Disk use stays bounded by retention (event count, age, bytes per
//! partition): the oldest events are trimmed logically and a segment file is
//! deleted once all of its events are trimmed. Appends reach the disk
//! according to the [`FsyncPolicy`].

mod budget;
mod crc32;
mod read;
mod recovery;
mod retention;
mod segment;

pub(crate) use budget::MemoryBudget;

use crate::{
    clock::now_millis,
    config::FsyncPolicy,
    error::{EmulatorError, Result},
    filter::StartPosition,
    message::{OpaqueMessage, ENQUEUED_TIME, OFFSET, SEQUENCE_NUMBER},
};
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp_types::{
    messaging::{
        annotations::OwnedKey, message::__private::Serializable, Body, MessageAnnotations,
    },
    primitives::{Symbol, Timestamp, Value},
};
use recovery::recover;
use segment::{encode_record, segment_path, HEADER_LEN};
use serde_amqp::lazy::LazyValue;
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// Most bytes one `read_from` call reads back from segment files.
const MAX_DISK_READ_BYTES: u64 = 4 * 1024 * 1024;

/// One stored event, ready to be sent as is (pre-settled where allowed).
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub sequence: i64,
    pub offset: i64,
    pub sendable: Sendable<Body<LazyValue>>,
    /// Encoded size, charged to the memory budget while cached.
    bytes: u64,
}

/// Values reported by a partition properties query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionSnapshot {
    pub begin_sequence: i64,
    pub last_sequence: i64,
    pub last_offset: i64,
    pub last_enqueued_ms: i64,
    pub is_empty: bool,
}

/// How logs store, retain and flush events.
#[derive(Debug, Clone)]
pub(crate) struct StorageOptions {
    pub retention_events: Option<u64>,
    pub retention_age: Option<Duration>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    pub budget: Arc<MemoryBudget>,
}

impl StorageOptions {
    /// In memory, no retention, a budget of `memory` bytes (for tests).
    #[cfg(test)]
    pub(crate) fn in_memory(memory: u64) -> Self {
        Self {
            retention_events: None,
            retention_age: None,
            retention_bytes: None,
            segment_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            budget: Arc::new(MemoryBudget::new(memory)),
        }
    }
}

/// Where a retained event is (the sequence number is implied by position).
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    offset: i64,
    enqueued_ms: i64,
    /// Record payload length (encoded message).
    len: u32,
}

#[derive(Debug)]
struct Segment {
    base_offset: i64,
    first_sequence: i64,
    path: PathBuf,
    len: u64,
}

#[derive(Debug)]
struct LogState {
    /// Sequence number of `index[0]`.
    first_sequence: i64,
    index: VecDeque<IndexEntry>,
    /// Sum of the retained records' sizes (header + payload).
    retained_bytes: u64,
    /// The newest events, contiguous up to `next_sequence - 1`.
    cache: VecDeque<Arc<StoredEvent>>,
    next_sequence: i64,
    next_offset: i64,
    last_enqueued_ms: i64,
    last_offset: i64,
    segments: VecDeque<Segment>,
    active: Option<File>,
    unsynced: bool,
    last_sync: Instant,
}

/// The events of one partition.
#[derive(Debug)]
pub(crate) struct PartitionLog {
    dir: Option<PathBuf>,
    options: StorageOptions,
    state: Mutex<LogState>,
    /// Carries the next sequence number; changes on every append.
    tail: watch::Sender<i64>,
}

fn storage_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmulatorError + '_ {
    move |source| EmulatorError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage_error(dir))
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(storage_error(path))
}

impl PartitionLog {
    /// An empty in-memory log (`dir` = `None`), or the log stored in `dir`
    /// (created if absent; a torn tail is cut, corruption is an error).
    pub(crate) fn open(dir: Option<PathBuf>, options: StorageOptions) -> Result<Self> {
        let mut state = LogState {
            first_sequence: 0,
            index: VecDeque::new(),
            retained_bytes: 0,
            cache: VecDeque::new(),
            next_sequence: 0,
            next_offset: 0,
            last_enqueued_ms: 0,
            last_offset: -1,
            segments: VecDeque::new(),
            active: None,
            unsynced: false,
            last_sync: Instant::now(),
        };
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(storage_error(dir))?;
            recover(dir, &mut state)?;
            let path = match state.segments.back() {
                Some(last) => last.path.clone(),
                None => {
                    let path = segment_path(dir, state.next_offset, state.next_sequence);
                    state.segments.push_back(Segment {
                        base_offset: state.next_offset,
                        first_sequence: state.next_sequence,
                        path: path.clone(),
                        len: 0,
                    });
                    path
                }
            };
            state.active = Some(open_append(&path)?);
        }
        let log = Self {
            dir,
            options,
            state: Mutex::new(state),
            tail: watch::channel(0).0,
        };
        {
            let mut state = log.lock();
            log.apply_retention(&mut state, now_millis());
            log.tail.send_replace(state.next_sequence);
        }
        Ok(log)
    }

    /// Whether events go to segment files (appends may block on the disk).
    pub(crate) fn is_persistent(&self) -> bool {
        self.dir.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves consistent data (appends
        // commit at the end), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends events atomically; all get consecutive sequence numbers. With
    /// segment files and [`FsyncPolicy::Always`] the events are on disk when
    /// this returns.
    pub(crate) fn append(&self, messages: Vec<OpaqueMessage>) -> Result<()> {
        let mut state = self.lock();
        let now = now_millis().max(state.last_enqueued_ms);
        if self.dir.is_some() {
            self.roll_if_full(&mut state)?;
        }
        let mut prepared = Vec::with_capacity(messages.len());
        let mut entries = Vec::with_capacity(messages.len());
        let mut bytes = Vec::new();
        let mut sequence = state.next_sequence;
        let mut offset = state.next_offset;
        for mut message in messages {
            let annotations = message
                .message_annotations
                .get_or_insert_with(|| MessageAnnotations(Default::default()));
            let mut put = |name: &str, value: Value| {
                annotations
                    .0
                    .insert(OwnedKey::Symbol(Symbol::from(name)), value);
            };
            put(SEQUENCE_NUMBER, Value::Long(sequence));
            put(OFFSET, Value::String(offset.to_string()));
            put(
                ENQUEUED_TIME,
                Value::Timestamp(Timestamp::from_milliseconds(now)),
            );
            let len = if self.dir.is_some() {
                let encoded = serde_amqp::to_vec(&Serializable(&message)).map_err(|e| {
                    EmulatorError::CorruptStore {
                        path: self.dir.clone().unwrap_or_default(),
                        message: format!("cannot encode event: {e}"),
                    }
                })?;
                encode_record(&mut bytes, sequence, now, &encoded);
                encoded.len()
            } else {
                serde_amqp::size_ser::serialized_size(&Serializable(&message)).unwrap_or(0)
            };
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            entries.push(IndexEntry {
                offset,
                enqueued_ms: now,
                len,
            });
            prepared.push(StoredEvent {
                sequence,
                offset,
                sendable: Sendable::builder().message(message).settled(true).build(),
                bytes: u64::from(len),
            });
            sequence += 1;
            offset += HEADER_LEN as i64 + i64::from(len);
        }
        if self.dir.is_some() {
            self.write(&mut state, &bytes)?;
        }
        if let Some(last) = prepared.last() {
            state.last_offset = last.offset;
        }
        state.next_sequence = sequence;
        state.next_offset = offset;
        state.last_enqueued_ms = now;
        for entry in entries {
            state.retained_bytes += HEADER_LEN + u64::from(entry.len);
            state.index.push_back(entry);
        }
        for event in prepared {
            self.options.budget.add(event.bytes);
            state.cache.push_back(Arc::new(event));
        }
        self.apply_retention(&mut state, now);
        self.evict_over_budget(&mut state);
        self.tail.send_replace(sequence);
        Ok(())
    }

    /// Writes records to the active segment and flushes them per policy; on
    /// failure the segment is cut back so no partial record stays behind.
    fn write(&self, state: &mut LogState, bytes: &[u8]) -> Result<()> {
        let Some(segment) = state.segments.back_mut() else {
            return Ok(());
        };
        let path = segment.path.clone();
        let Some(file) = state.active.as_mut() else {
            return Ok(());
        };
        if let Err(source) = file.write_all(bytes) {
            let _ = file.set_len(segment.len);
            return Err(EmulatorError::Storage { path, source });
        }
        segment.len += bytes.len() as u64;
        match self.options.fsync {
            FsyncPolicy::Always => {
                file.sync_data().map_err(storage_error(&path))?;
                state.last_sync = Instant::now();
            }
            FsyncPolicy::Interval => {
                state.unsynced = true;
                if state.last_sync.elapsed() >= self.options.fsync_interval {
                    file.sync_data().map_err(storage_error(&path))?;
                    state.unsynced = false;
                    state.last_sync = Instant::now();
                }
            }
            FsyncPolicy::Never => {}
        }
        Ok(())
    }

    /// Starts a new segment once the active one reached `segment_bytes`.
    fn roll_if_full(&self, state: &mut LogState) -> Result<()> {
        let (Some(dir), Some(segment)) = (&self.dir, state.segments.back()) else {
            return Ok(());
        };
        if segment.len < self.options.segment_bytes {
            return Ok(());
        }
        if let Some(file) = state.active.as_ref() {
            if self.options.fsync != FsyncPolicy::Never {
                file.sync_data().map_err(storage_error(&segment.path))?;
            }
        }
        let path = segment_path(dir, state.next_offset, state.next_sequence);
        state.active = Some(open_append(&path)?);
        if self.options.fsync == FsyncPolicy::Always {
            sync_dir(dir)?;
        }
        state.segments.push_back(Segment {
            base_offset: state.next_offset,
            first_sequence: state.next_sequence,
            path,
            len: 0,
        });
        Ok(())
    }

    /// For [`FsyncPolicy::Interval`]: flushes appends older than the interval.
    pub(crate) fn sync_if_due(&self) {
        let mut state = self.lock();
        if !state.unsynced || state.last_sync.elapsed() < self.options.fsync_interval {
            return;
        }
        if let Some(file) = state.active.as_ref() {
            if let Err(error) = file.sync_data() {
                tracing::warn!(%error, dir = ?self.dir, "fsync failed");
                return;
            }
        }
        state.unsynced = false;
        state.last_sync = Instant::now();
    }

    pub(crate) fn snapshot(&self) -> PartitionSnapshot {
        let state = self.lock();
        PartitionSnapshot {
            begin_sequence: if state.index.is_empty() {
                state.next_sequence
            } else {
                state.first_sequence
            },
            last_sequence: state.next_sequence - 1,
            last_offset: state.last_offset,
            last_enqueued_ms: state.last_enqueued_ms,
            is_empty: state.index.is_empty(),
        }
    }

    /// The first sequence number a reader starting at `position` receives.
    pub(crate) fn resolve(&self, position: &StartPosition) -> i64 {
        let state = self.lock();
        let first_where = |pred: &dyn Fn(&IndexEntry) -> bool| {
            let index = state.index.partition_point(|e| !pred(e));
            state.first_sequence + index as i64
        };
        match *position {
            StartPosition::Earliest => state.first_sequence,
            StartPosition::Latest => state.next_sequence,
            StartPosition::Offset { offset, inclusive } => {
                first_where(&|e| e.offset > offset || (inclusive && e.offset == offset))
            }
            StartPosition::Sequence {
                sequence,
                inclusive,
            } => {
                let wanted = if inclusive {
                    sequence
                } else {
                    sequence.saturating_add(1)
                };
                wanted.clamp(state.first_sequence, state.next_sequence)
            }
            StartPosition::EnqueuedTime { millis, inclusive } => {
                first_where(&|e| e.enqueued_ms > millis || (inclusive && e.enqueued_ms == millis))
            }
        }
    }

    /// A receiver that changes whenever events are appended.
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.tail.subscribe()
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let cached: u64 = state.cache.iter().map(|e| e.bytes).sum();
        self.options.budget.release(cached);
        if state.unsynced {
            if let Some(file) = state.active.as_ref() {
                let _ = file.sync_data();
            }
        }
    }
}

#[cfg(test)]
mod tests;
