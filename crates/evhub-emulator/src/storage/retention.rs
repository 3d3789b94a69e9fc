//! Retention (count, age, bytes) and the memory budget: which events a log
//! keeps, in memory and on disk.

use super::{LogState, PartitionLog, HEADER_LEN};

impl PartitionLog {
    pub(super) fn trim_front(&self, state: &mut LogState) {
        let Some(entry) = state.index.pop_front() else {
            return;
        };
        state.retained_bytes = state
            .retained_bytes
            .saturating_sub(HEADER_LEN + u64::from(entry.len));
        state.first_sequence += 1;
        while state
            .cache
            .front()
            .is_some_and(|e| e.sequence < state.first_sequence)
        {
            if let Some(event) = state.cache.pop_front() {
                self.options.budget.release(event.bytes);
            }
        }
    }

    pub(super) fn apply_retention(&self, state: &mut LogState, now: i64) {
        let options = &self.options;
        if let Some(limit) = options.retention_events {
            while state.index.len() as u64 > limit {
                self.trim_front(state);
            }
        }
        if let Some(age) = options.retention_age {
            let cutoff = now.saturating_sub(age.as_millis() as i64);
            while state.index.front().is_some_and(|e| e.enqueued_ms < cutoff) {
                self.trim_front(state);
            }
        }
        if let Some(limit) = options.retention_bytes {
            while state.retained_bytes > limit && !state.index.is_empty() {
                self.trim_front(state);
            }
        }
        // Segments whose events are all trimmed go; the active one stays.
        while state.segments.len() > 1
            && state
                .segments
                .get(1)
                .is_some_and(|next| next.first_sequence <= state.first_sequence)
        {
            if let Some(old) = state.segments.pop_front() {
                match std::fs::remove_file(&old.path) {
                    Ok(()) => {
                        tracing::debug!(path = %old.path.display(), "segment removed by retention")
                    }
                    Err(error) => {
                        tracing::warn!(path = %old.path.display(), %error, "could not remove a segment")
                    }
                }
            }
        }
    }

    /// Drops the oldest cached events while the emulator is over its memory
    /// budget. Without segment files they are gone, like retention.
    pub(super) fn evict_over_budget(&self, state: &mut LogState) {
        while self.options.budget.over() && state.cache.len() > 1 {
            if self.dir.is_none() {
                self.trim_front(state);
            } else if let Some(event) = state.cache.pop_front() {
                self.options.budget.release(event.bytes);
            }
        }
    }
}
