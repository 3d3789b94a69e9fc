//! librdkafka messages → owned evhub events.
//!
//! The keys and payloads of one fetched batch are copied into one buffer and handed out as
//! slices of it: one allocation (and one free, wherever the last event of the batch is dropped)
//! per batch instead of two per event. An application that keeps one event keeps its batch's
//! buffer alive; batches are capped at [`BATCH_BYTES`] to bound that.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use evhub_core::{Headers, PartitionId, ReceivedEvent};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};

/// Most events converted (and handed over) in one step.
pub(crate) const BATCH_EVENTS: usize = 512;

/// A batch stops growing once its keys and payloads reach this many bytes, so one retained
/// event never pins much more than this.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// Bytes a message adds to its batch's shared buffer.
pub(crate) fn buffered_len(message: &BorrowedMessage<'_>) -> usize {
    message.key_len() + message.payload_len()
}

/// Converts `messages` (all of topic `hub`) into owned events, in order, sharing one buffer.
/// Messages with a partition id that is not a valid evhub partition are skipped.
pub(crate) fn events(hub: &Arc<str>, messages: &[BorrowedMessage<'_>]) -> Vec<ReceivedEvent> {
    let total: usize = messages.iter().map(buffered_len).sum();
    let mut buffer = Vec::with_capacity(total);
    for m in messages {
        if let Some(key) = m.key() {
            buffer.extend_from_slice(key);
        }
        if let Some(payload) = m.payload() {
            buffer.extend_from_slice(payload);
        }
    }
    let buffer = Bytes::from(buffer);
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
    let mut out = Vec::with_capacity(messages.len());
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
    out
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
