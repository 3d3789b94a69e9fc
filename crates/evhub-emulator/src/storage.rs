//! Partition logs: events in memory, optionally mirrored to an append-only
//! file so a restart keeps them with their sequence numbers and offsets.
//!
//! File format: a sequence of records `u32 big-endian length` + the encoded
//! AMQP message as delivered (with the `x-opt-*` annotations already added).
//! Offsets are byte positions in that stream, like Event Hubs' own offsets.
//! Retention trims memory only; the file is never rewritten.

use crate::{
    error::{EmulatorError, Result},
    filter::StartPosition,
};
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp_types::{
    messaging::{
        annotations::OwnedKey,
        message::__private::{Deserializable, Serializable},
        Body, Message, MessageAnnotations,
    },
    primitives::{Symbol, Timestamp, Value},
};
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::watch;

/// Body type used for every event: any of data / sequence / value sections.
pub(crate) type EventMessage = Message<Body<Value>>;

pub(crate) const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
pub(crate) const OFFSET: &str = "x-opt-offset";
pub(crate) const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
pub(crate) const PARTITION_KEY: &str = "x-opt-partition-key";

/// One stored event, ready to be sent as is (pre-settled where allowed).
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub sequence: i64,
    pub offset: i64,
    pub enqueued_ms: i64,
    pub sendable: Sendable<Body<Value>>,
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

#[derive(Debug)]
struct LogState {
    events: VecDeque<Arc<StoredEvent>>,
    next_sequence: i64,
    next_offset: i64,
    last_enqueued_ms: i64,
    last_offset: i64,
    file: Option<File>,
}

/// The events of one partition.
#[derive(Debug)]
pub(crate) struct PartitionLog {
    path: Option<PathBuf>,
    retention: Option<usize>,
    state: Mutex<LogState>,
    /// Carries the next sequence number; changes on every append.
    tail: watch::Sender<i64>,
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn annotation<'a>(message: &'a EventMessage, name: &str) -> Option<&'a Value> {
    message
        .message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(name)))
}

/// The partition key annotation of a message, if it is a string.
pub(crate) fn partition_key_of(message: &EventMessage) -> Option<String> {
    match annotation(message, PARTITION_KEY)? {
        Value::String(key) => Some(key.clone()),
        Value::Symbol(key) => Some(key.as_str().to_string()),
        _ => None,
    }
}

fn storage_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmulatorError + '_ {
    move |source| EmulatorError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

impl PartitionLog {
    /// An empty in-memory log, or the log stored at `path` (created if absent).
    pub(crate) fn open(path: Option<PathBuf>, retention: Option<u64>) -> Result<Self> {
        let retention = retention.map(|r| r.min(usize::MAX as u64) as usize);
        let mut state = LogState {
            events: VecDeque::new(),
            next_sequence: 0,
            next_offset: 0,
            last_enqueued_ms: 0,
            last_offset: -1,
            file: None,
        };
        if let Some(path) = &path {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(storage_error(path))?;
            let good_len = load_records(path, &mut file, &mut state, retention)?;
            let file_len = file.metadata().map_err(storage_error(path))?.len();
            if good_len < file_len {
                tracing::warn!(
                    path = %path.display(),
                    dropped_bytes = file_len - good_len,
                    "truncating an incomplete record at the end of the event store"
                );
                file.set_len(good_len).map_err(storage_error(path))?;
            }
            file.seek(SeekFrom::End(0)).map_err(storage_error(path))?;
            state.file = Some(file);
        }
        let (tail, _) = watch::channel(state.next_sequence);
        Ok(Self {
            path,
            retention,
            state: Mutex::new(state),
            tail,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves consistent data (appends
        // commit at the end), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends events atomically; all get consecutive sequence numbers.
    pub(crate) fn append(&self, messages: Vec<EventMessage>) -> Result<()> {
        let mut state = self.lock();
        let now = now_millis().max(state.last_enqueued_ms);
        let mut prepared = Vec::with_capacity(messages.len());
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
            let encoded_len = if self.path.is_some() {
                let encoded = serde_amqp::to_vec(&Serializable(&message)).map_err(|e| {
                    EmulatorError::CorruptStore {
                        path: self.path.clone().unwrap_or_default(),
                        message: format!("cannot encode event: {e}"),
                    }
                })?;
                bytes.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&encoded);
                encoded.len() + 4
            } else {
                serde_amqp::size_ser::serialized_size(&Serializable(&message)).unwrap_or(0) + 4
            };
            prepared.push(StoredEvent {
                sequence,
                offset,
                enqueued_ms: now,
                sendable: Sendable::builder().message(message).settled(true).build(),
            });
            sequence += 1;
            offset += encoded_len as i64;
        }
        if let (Some(file), Some(path)) = (state.file.as_mut(), self.path.as_ref()) {
            file.write_all(&bytes).map_err(storage_error(path))?;
        }
        if let Some(last) = prepared.last() {
            state.last_offset = last.offset;
        }
        state.next_sequence = sequence;
        state.next_offset = offset;
        state.last_enqueued_ms = now;
        state.events.extend(prepared.into_iter().map(Arc::new));
        if let Some(limit) = self.retention {
            while state.events.len() > limit {
                state.events.pop_front();
            }
        }
        self.tail.send_replace(sequence);
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> PartitionSnapshot {
        let state = self.lock();
        let begin_sequence = state
            .events
            .front()
            .map_or(state.next_sequence, |e| e.sequence);
        PartitionSnapshot {
            begin_sequence,
            last_sequence: state.next_sequence - 1,
            last_offset: state.last_offset,
            last_enqueued_ms: state.last_enqueued_ms,
            is_empty: state.events.is_empty(),
        }
    }

    /// The first sequence number a reader starting at `position` receives.
    pub(crate) fn resolve(&self, position: &StartPosition) -> i64 {
        let state = self.lock();
        let first_where = |pred: &dyn Fn(&StoredEvent) -> bool| {
            let index = state.events.partition_point(|e| !pred(e));
            state
                .events
                .get(index)
                .map_or(state.next_sequence, |e| e.sequence)
        };
        match *position {
            StartPosition::Earliest => state
                .events
                .front()
                .map_or(state.next_sequence, |e| e.sequence),
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
                first_where(&|e| e.sequence >= wanted)
            }
            StartPosition::EnqueuedTime { millis, inclusive } => {
                first_where(&|e| e.enqueued_ms > millis || (inclusive && e.enqueued_ms == millis))
            }
        }
    }

    /// Up to `max` events from `sequence` on (or from the oldest retained one
    /// if `sequence` was trimmed away).
    pub(crate) fn read_from(&self, sequence: i64, max: usize) -> Vec<Arc<StoredEvent>> {
        let state = self.lock();
        let Some(front) = state.events.front() else {
            return Vec::new();
        };
        let start = (sequence - front.sequence).max(0) as usize;
        state.events.iter().skip(start).take(max).cloned().collect()
    }

    /// A receiver that changes whenever events are appended.
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.tail.subscribe()
    }
}

/// Reads all complete records; returns the byte length they cover.
fn load_records(
    path: &Path,
    file: &mut File,
    state: &mut LogState,
    retention: Option<usize>,
) -> Result<u64> {
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(storage_error(path))?;
    file.read_to_end(&mut data).map_err(storage_error(path))?;
    let corrupt = |message: String| EmulatorError::CorruptStore {
        path: path.to_path_buf(),
        message,
    };
    let mut position = 0usize;
    while data.len() - position >= 4 {
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&data[position..position + 4]);
        let len = u32::from_be_bytes(len_bytes) as usize;
        let Some(record) = data.get(position + 4..position + 4 + len) else {
            break; // incomplete tail record: the write was interrupted
        };
        let message: EventMessage = serde_amqp::from_slice::<Deserializable<EventMessage>>(record)
            .map_err(|e| corrupt(format!("record at byte {position}: {e}")))?
            .0;
        let sequence = match annotation(&message, SEQUENCE_NUMBER) {
            Some(Value::Long(s)) => *s,
            _ => {
                return Err(corrupt(format!(
                    "record at byte {position} has no sequence number"
                )))
            }
        };
        let enqueued_ms = match annotation(&message, ENQUEUED_TIME) {
            Some(Value::Timestamp(t)) => t.milliseconds(),
            _ => {
                return Err(corrupt(format!(
                    "record at byte {position} has no enqueued time"
                )))
            }
        };
        if sequence != state.next_sequence {
            return Err(corrupt(format!(
                "record at byte {position} has sequence {sequence}, expected {}",
                state.next_sequence
            )));
        }
        state.events.push_back(Arc::new(StoredEvent {
            sequence,
            offset: position as i64,
            enqueued_ms,
            sendable: Sendable::builder().message(message).settled(true).build(),
        }));
        if let Some(limit) = retention {
            while state.events.len() > limit {
                state.events.pop_front();
            }
        }
        state.last_offset = position as i64;
        state.next_sequence = sequence + 1;
        state.last_enqueued_ms = enqueued_ms;
        position += 4 + len;
        state.next_offset = position as i64;
    }
    Ok(position as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{Batch, Data};
    use serde_amqp::primitives::Binary;

    fn event(text: &str) -> EventMessage {
        Message::builder()
            .body(Body::Data(Batch::new(vec![Data(Binary::from(
                text.as_bytes().to_vec(),
            ))])))
            .build()
    }

    fn body_text(e: &StoredEvent) -> String {
        match &e.sendable.message.body {
            Body::Data(batch) => String::from_utf8(batch[0].0.to_vec()).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn sequence_offsets_and_positions() {
        let log = PartitionLog::open(None, None).unwrap();
        assert_eq!(log.resolve(&StartPosition::Latest), 0);
        assert!(log.snapshot().is_empty);
        assert_eq!(log.snapshot().last_sequence, -1);
        log.append(vec![event("a"), event("b"), event("c")])
            .unwrap();
        let all = log.read_from(0, 10);
        assert_eq!(
            all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(all[0].offset < all[1].offset && all[1].offset < all[2].offset);
        assert_eq!(body_text(&all[1]), "b");
        let snap = log.snapshot();
        assert_eq!((snap.begin_sequence, snap.last_sequence), (0, 2));
        assert_eq!(snap.last_offset, all[2].offset);
        use StartPosition::*;
        assert_eq!(log.resolve(&Earliest), 0);
        assert_eq!(log.resolve(&Latest), 3);
        assert_eq!(
            log.resolve(&Sequence {
                sequence: 1,
                inclusive: true
            }),
            1
        );
        assert_eq!(
            log.resolve(&Sequence {
                sequence: 1,
                inclusive: false
            }),
            2
        );
        let offset = all[1].offset;
        assert_eq!(
            log.resolve(&Offset {
                offset,
                inclusive: true
            }),
            1
        );
        assert_eq!(
            log.resolve(&Offset {
                offset,
                inclusive: false
            }),
            2
        );
        let t = all[0].enqueued_ms;
        assert_eq!(
            log.resolve(&EnqueuedTime {
                millis: t - 1,
                inclusive: false
            }),
            0
        );
        assert_eq!(
            log.resolve(&EnqueuedTime {
                millis: t + 60_000,
                inclusive: false
            }),
            3
        );
    }

    #[test]
    fn retention_drops_oldest() {
        let log = PartitionLog::open(None, Some(2)).unwrap();
        log.append(vec![event("a"), event("b"), event("c")])
            .unwrap();
        let snap = log.snapshot();
        assert_eq!((snap.begin_sequence, snap.last_sequence), (1, 2));
        assert_eq!(log.read_from(0, 10)[0].sequence, 1);
        assert_eq!(log.resolve(&StartPosition::Earliest), 1);
    }

    #[test]
    fn file_log_survives_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = PartitionLog::open(Some(path.clone()), None).unwrap();
        log.append(vec![event("a"), event("b")]).unwrap();
        let before: Vec<_> = log
            .read_from(0, 10)
            .iter()
            .map(|e| (e.sequence, e.offset, e.enqueued_ms))
            .collect();
        drop(log);
        // Simulate a write cut short by a crash.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 1, 0, 1, 2]).unwrap();
        drop(file);
        let log = PartitionLog::open(Some(path.clone()), None).unwrap();
        let after: Vec<_> = log
            .read_from(0, 10)
            .iter()
            .map(|e| (e.sequence, e.offset, e.enqueued_ms))
            .collect();
        assert_eq!(before, after);
        log.append(vec![event("c")]).unwrap();
        drop(log);
        let log = PartitionLog::open(Some(path), None).unwrap();
        let events = log.read_from(0, 10);
        assert_eq!(events.len(), 3);
        assert_eq!(body_text(&events[2]), "c");
        assert_eq!(events[2].sequence, 2);
    }
}
