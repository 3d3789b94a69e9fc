//! The total number of event bytes all partitions keep in memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by every partition log of an emulator. With a data directory, events
/// beyond the budget are dropped from memory and read back from their segment
/// files when a reader needs them; without one, the oldest events beyond the
/// budget are gone (as with retention).
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn release(&self, bytes: u64) {
        // Saturating: never wraps even if accounting drifted.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    pub(crate) fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    /// Bytes currently held.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}
