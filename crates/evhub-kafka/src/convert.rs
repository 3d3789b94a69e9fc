//! librdkafka messages → owned evhub events.
//!
//! The keys and payloads of one fetched batch are copied into one buffer and handed out as
//! slices of it: no allocation per event. When the last event of a batch is dropped (on the
//! application's thread), its buffer goes back to a small [`BufferPool`] the poll thread takes
//! the next buffers from, so buffers are neither allocated nor freed (nor page-faulted in) per
//! batch. An application that keeps one event keeps its batch's buffer alive; batches are capped
//! at [`BATCH_BYTES`] to bound that.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use evhub_core::{Headers, PartitionId, ReceivedEvent};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};

/// Most events converted (and handed over) in one step.
pub(crate) const BATCH_EVENTS: usize = 512;

/// A batch stops growing once its keys and payloads reach this many bytes, so one retained
/// event never pins much more than this.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// Copies of one hub name, used in turn by consecutive batches.
///
/// Every event holds a reference to its hub name, so the poll thread increments a reference
/// count per event while the application thread decrements one per event it drops. With a single
/// `Arc<str>` both threads would fight over one cache line for every event; with a few copies on
/// distinct cache lines the application drops events of an earlier batch (one copy) while the
/// poll thread fills the next (another copy).
pub(crate) struct HubNames {
    names: Vec<Arc<str>>,
    next: usize,
}

impl HubNames {
    const COPIES: usize = 4;
    /// Addresses at least this far apart are on different cache lines (and prefetch pairs).
    const APART: usize = 128;

    pub fn new(hub: &Arc<str>) -> Self {
        let mut names: Vec<Arc<str>> = vec![hub.clone()];
        // Allocations that landed too close to a kept copy are held until all copies are
        // found, so the allocator cannot hand the same spot out again.
        let mut too_close = Vec::new();
        while names.len() < Self::COPIES && too_close.len() < 64 {
            let candidate: Arc<str> = Arc::from(&**hub);
            let at = Arc::as_ptr(&candidate) as *const u8 as usize;
            if names
                .iter()
                .all(|n| (Arc::as_ptr(n) as *const u8 as usize).abs_diff(at) >= Self::APART)
            {
                names.push(candidate);
            } else {
                too_close.push(candidate);
            }
        }
        Self { names, next: 0 }
    }

    /// The copy for the next batch.
    pub fn next(&mut self) -> &Arc<str> {
        self.next = (self.next + 1) % self.names.len();
        &self.names[self.next]
    }
}

/// Bytes a message adds to its batch's shared buffer.
pub(crate) fn buffered_len(message: &BorrowedMessage<'_>) -> usize {
    message.key_len() + message.payload_len()
}

/// Batch buffers returned by dropped events, for the next batches.
#[derive(Debug, Default)]
pub(crate) struct BufferPool(Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    /// Buffers kept for reuse; more are freed.
    const KEEP: usize = 8;

    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buffer = crate::util::lock(&self.0).pop().unwrap_or_default();
        buffer.reserve(capacity);
        buffer
    }

    fn put(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 2 * BATCH_BYTES {
            return;
        }
        buffer.clear();
        let mut spare = crate::util::lock(&self.0);
        if spare.len() < Self::KEEP {
            spare.push(buffer);
        }
    }
}

/// Converts `messages` (all of topic `hub`) into owned events appended to `out`, in order,
/// sharing one buffer from `pool`. Messages with a partition id that is not a valid evhub
/// partition are skipped.
pub(crate) fn events_into(
    hub: &Arc<str>,
    messages: &[BorrowedMessage<'_>],
    pool: &Arc<BufferPool>,
    out: &mut Vec<ReceivedEvent>,
) {
    let total: usize = messages.iter().map(buffered_len).sum();
    let mut buffer = pool.take(total);
    for m in messages {
        if let Some(key) = m.key() {
            buffer.extend_from_slice(key);
        }
        if let Some(payload) = m.payload() {
            buffer.extend_from_slice(payload);
        }
    }
    let buffer = Bytes::from_owner(BatchBuffer {
        bytes: buffer,
        pool: pool.clone(),
    });
    let mut at = 0;
    let mut slice = |len: usize| {
        let part = if len == 0 {
            Bytes::new()
        } else {
            buffer.slice(at..at + len)
        };
        at += len;
        part
    };
    out.reserve(messages.len());
    for m in messages {
        let key = m.key().map(|k| slice(k.len()));
        let payload = slice(m.payload_len());
        let Ok(partition) = PartitionId::try_from(m.partition()) else {
            continue;
        };
        out.push(ReceivedEvent {
            hub: hub.clone(),
            partition,
            offset: m.offset(),
            service_offset: None,
            enqueued_at: enqueued_at(m),
            key,
            payload,
            headers: headers(m),
        });
    }
}

/// [`events_into`] a new `Vec`.
pub(crate) fn events(
    hub: &Arc<str>,
    messages: &[BorrowedMessage<'_>],
    pool: &Arc<BufferPool>,
) -> Vec<ReceivedEvent> {
    let mut out = Vec::new();
    events_into(hub, messages, pool, &mut out);
    out
}

/// A batch's keys and payloads. Aligned (and so sized) to whole cache lines: the reference
/// count `Bytes` keeps next to it is then never on a cache line shared with the previous batch's,
/// which the application thread decrements while the poll thread builds the next batch.
#[repr(align(128))]
struct BatchBuffer {
    bytes: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for BatchBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.bytes));
    }
}

fn enqueued_at(m: &BorrowedMessage<'_>) -> Option<SystemTime> {
    m.timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms > 0)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// Headers in order. librdkafka answers "no headers" without parsing when the record has none,
/// and an empty `Vec` allocates nothing.
fn headers(m: &BorrowedMessage<'_>) -> Headers {
    match m.headers() {
        Some(hs) if hs.count() > 0 => hs
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                )
            })
            .collect(),
        _ => Headers::new(),
    }
}
