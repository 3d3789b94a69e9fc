//! What a backend can do, so callers and the conformance suite can check before they try.

use serde::{Deserialize, Serialize};

/// Features of a backend. Operations a backend lacks fail with
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported); conformance cases that need them
/// are reported as skipped with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Hubs can be created through evhub ([`crate::Backend::create_hub`]).
    pub create_hub: bool,
    /// Partitions can be read directly from a start position ([`crate::PartitionReader`]).
    pub partition_reader: bool,
    /// Readers can start at a point in time.
    pub seek_by_time: bool,
    /// Events carry headers.
    pub headers: bool,
    /// Partition keys may be arbitrary bytes (Event Hubs needs UTF-8 strings).
    pub binary_keys: bool,
    /// Producers can target an explicit partition.
    pub explicit_partition: bool,
    /// Producers deduplicate retries (Kafka idempotent producer).
    pub idempotence: bool,
    /// Atomic multi-event writes across partitions.
    pub transactions: bool,
    /// Largest accepted event in bytes (key + payload + headers).
    pub max_event_bytes: usize,
}

impl Capabilities {
    /// Capabilities of a backend that supports nothing optional; a starting point for builders.
    pub fn minimal(max_event_bytes: usize) -> Self {
        Self {
            create_hub: false,
            partition_reader: false,
            seek_by_time: false,
            headers: false,
            binary_keys: false,
            explicit_partition: false,
            idempotence: false,
            transactions: false,
            max_event_bytes,
        }
    }

    /// Sets [`Capabilities::create_hub`].
    pub fn with_create_hub(mut self, v: bool) -> Self {
        self.create_hub = v;
        self
    }
    /// Sets [`Capabilities::partition_reader`].
    pub fn with_partition_reader(mut self, v: bool) -> Self {
        self.partition_reader = v;
        self
    }
    /// Sets [`Capabilities::seek_by_time`].
    pub fn with_seek_by_time(mut self, v: bool) -> Self {
        self.seek_by_time = v;
        self
    }
    /// Sets [`Capabilities::headers`].
    pub fn with_headers(mut self, v: bool) -> Self {
        self.headers = v;
        self
    }
    /// Sets [`Capabilities::binary_keys`].
    pub fn with_binary_keys(mut self, v: bool) -> Self {
        self.binary_keys = v;
        self
    }
    /// Sets [`Capabilities::explicit_partition`].
    pub fn with_explicit_partition(mut self, v: bool) -> Self {
        self.explicit_partition = v;
        self
    }
    /// Sets [`Capabilities::idempotence`].
    pub fn with_idempotence(mut self, v: bool) -> Self {
        self.idempotence = v;
        self
    }
    /// Sets [`Capabilities::transactions`].
    pub fn with_transactions(mut self, v: bool) -> Self {
        self.transactions = v;
        self
    }
}
