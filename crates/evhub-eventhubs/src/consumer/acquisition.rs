//! The partitions a member currently reads, one acquisition at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use evhub_core::PartitionId;

/// One acquisition of a partition by this member.
#[derive(Debug, Clone)]
pub(crate) struct Acquired {
    pub generation: u64,
    pub at: Instant,
    /// Wakes the partition's pump when the acquisition is ended by someone else, so it stops
    /// and closes its client even when no event arrives (the processor then hands the
    /// partition out again, from the checkpoint, should this member win it back).
    pub ended: Arc<tokio::sync::Notify>,
    /// What the pump has done so far, for the stall check of [`super::stall`].
    pub progress: Arc<Progress>,
}

/// A pump's progress: written by the pump, read by the supervisor.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Sequence number of the last event handed over; -1 before the first.
    pub delivered: AtomicI64,
    /// The pump is waiting for the receiver (not for room in the channel).
    pub waiting: AtomicBool,
    /// Sequence number of the last event `recv` returned to the application; -1 before.
    pub handed: AtomicI64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            delivered: AtomicI64::new(-1),
            waiting: AtomicBool::new(false),
            handed: AtomicI64::new(-1),
        }
    }
}

/// Partitions currently read by this member. The dispatcher adds an acquisition, its pump
/// removes it when it ends, and the store wrapper removes it as soon as an ownership listing
/// (started after the acquisition) names another owner, so no event of a partition taken over
/// reaches the application, even before this member's next balancing pass.
pub(crate) type Reading = Arc<Mutex<HashMap<PartitionId, Acquired>>>;
