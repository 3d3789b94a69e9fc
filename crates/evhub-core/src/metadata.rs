//! Hub and partition metadata.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::event::PartitionId;

/// Properties of a hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubProperties {
    /// Hub name.
    pub name: String,
    /// Partition ids, ascending.
    pub partitions: Vec<PartitionId>,
    /// When the hub was created, where the service reports it.
    pub created_at: Option<SystemTime>,
}

/// Properties of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProperties {
    /// Hub name.
    pub hub: String,
    /// Partition id.
    pub partition: PartitionId,
    /// Offset of the oldest retained event (equals `end_offset` when empty).
    pub begin_offset: i64,
    /// Offset the next event will get (one past the last event).
    pub end_offset: i64,
    /// When the last event was enqueued, where the service reports it.
    pub last_enqueued_at: Option<SystemTime>,
}

impl PartitionProperties {
    /// Whether the partition holds no retained event.
    pub fn is_empty(&self) -> bool {
        self.end_offset <= self.begin_offset
    }

    /// Number of retained events.
    pub fn len(&self) -> u64 {
        u64::try_from(self.end_offset - self.begin_offset).unwrap_or(0)
    }
}

/// Options for [`crate::Backend::create_hub`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubOptions {
    /// Number of partitions.
    pub partitions: u32,
}

impl HubOptions {
    /// A hub with `partitions` partitions.
    pub fn with_partitions(partitions: u32) -> Self {
        Self { partitions }
    }
}
