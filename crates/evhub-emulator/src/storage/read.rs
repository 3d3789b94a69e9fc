//! Reading events: from the in-memory cache, or back from segment files for
//! events no longer cached.

use super::{segment::read_record, PartitionLog, StoredEvent, MAX_DISK_READ_BYTES};
use crate::message::OpaqueMessage;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp_types::messaging::message::__private::Deserializable;
use std::sync::Arc;

fn decode_event(payload: &[u8]) -> std::result::Result<OpaqueMessage, String> {
    serde_amqp::from_slice::<Deserializable<OpaqueMessage>>(payload)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}

impl PartitionLog {
    /// Up to `max` events from `sequence` on (or from the oldest retained one
    /// if `sequence` was trimmed away); from memory, or read back from the
    /// segment files for events no longer cached.
    pub(crate) fn read_from(&self, sequence: i64, max: usize) -> Vec<Arc<StoredEvent>> {
        let state = self.lock();
        let start = sequence.max(state.first_sequence);
        if start >= state.next_sequence || max == 0 {
            return Vec::new();
        }
        let cache_first = state
            .cache
            .front()
            .map_or(state.next_sequence, |e| e.sequence);
        if start >= cache_first {
            let skip = (start - cache_first) as usize;
            return state.cache.iter().skip(skip).take(max).cloned().collect();
        }
        // Older than the cache: find the records, then read them unlocked.
        let mut wanted = Vec::new();
        let mut bytes = 0u64;
        let mut sequence = start;
        while sequence < cache_first && wanted.len() < max && bytes < MAX_DISK_READ_BYTES {
            let Some(entry) = state.index.get((sequence - state.first_sequence) as usize) else {
                break;
            };
            let segment_index = state
                .segments
                .partition_point(|s| s.base_offset <= entry.offset)
                .saturating_sub(1);
            let Some(segment) = state.segments.get(segment_index) else {
                break;
            };
            wanted.push((
                sequence,
                *entry,
                segment.path.clone(),
                (entry.offset - segment.base_offset) as u64,
            ));
            bytes += u64::from(entry.len);
            sequence += 1;
        }
        drop(state);
        let mut events = Vec::with_capacity(wanted.len());
        for (sequence, entry, path, position) in wanted {
            let message = match read_record(&path, position, entry.len)
                .map_err(|e| e.to_string())
                .and_then(|payload| decode_event(&payload))
            {
                Ok(message) => message,
                Err(error) => {
                    // E.g. the segment was removed by retention meanwhile.
                    tracing::debug!(sequence, %error, "could not read an event back");
                    break;
                }
            };
            events.push(Arc::new(StoredEvent {
                sequence,
                offset: entry.offset,
                sendable: Sendable::builder().message(message).settled(true).build(),
                bytes: 0,
            }));
        }
        events
    }
}
