//! Start-up: rebuilding a partition's index from its segment files.

use super::{
    segment::{list_segments, scan_segment},
    storage_error, IndexEntry, LogState, Segment,
};
use crate::error::{EmulatorError, Result};
use std::{fs::OpenOptions, path::Path};

/// Rebuilds the index from the segment files, checking every record.
pub(super) fn recover(dir: &Path, state: &mut LogState) -> Result<()> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    for (number, (base_offset, first_sequence, path)) in segments.into_iter().enumerate() {
        let is_last = number + 1 == count;
        let gap = |what: String| EmulatorError::CorruptStore {
            path: path.clone(),
            message: format!("{what}; a segment is missing or was renamed"),
        };
        if number == 0 {
            state.first_sequence = first_sequence;
            state.next_sequence = first_sequence;
            state.next_offset = base_offset;
        } else if base_offset != state.next_offset || first_sequence != state.next_sequence {
            return Err(gap(format!(
                "segment starts at offset {base_offset} / sequence {first_sequence}, the \
                 previous one ends at {} / {}",
                state.next_offset, state.next_sequence
            )));
        }
        let outcome = scan_segment(&path, is_last, |meta| {
            if meta.sequence != state.next_sequence {
                return Err(EmulatorError::CorruptStore {
                    path: path.clone(),
                    message: format!(
                        "record at byte {} has sequence {}, expected {}",
                        meta.position, meta.sequence, state.next_sequence
                    ),
                });
            }
            let offset = base_offset + meta.position as i64;
            state.index.push_back(IndexEntry {
                offset,
                enqueued_ms: meta.enqueued_ms,
                len: meta.len,
            });
            state.retained_bytes += meta.total_len();
            state.last_offset = offset;
            state.last_enqueued_ms = meta.enqueued_ms;
            state.next_sequence = meta.sequence + 1;
            Ok(())
        })?;
        if outcome.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = outcome.torn_bytes,
                "cutting an incomplete record off the end of the event store (a write was interrupted)"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(storage_error(&path))?;
            file.set_len(outcome.valid_len)
                .and_then(|_| file.sync_all())
                .map_err(storage_error(&path))?;
        }
        state.next_offset = base_offset + outcome.valid_len as i64;
        state.segments.push_back(Segment {
            base_offset,
            first_sequence,
            path,
            len: outcome.valid_len,
        });
    }
    Ok(())
}
