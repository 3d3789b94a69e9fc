//! Events as sent and as received.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Partition index within a hub (`0..partition_count`).
pub type PartitionId = u32;

/// Ordered event headers: Kafka headers, AMQP application properties.
///
/// Names may repeat (Kafka allows it); values are raw bytes.
pub type Headers = Vec<(String, Bytes)>;

/// An event to publish. Owned, cheap to clone (payloads are [`Bytes`]).
///
/// ```
/// use evhub_core::Event;
/// let event = Event::new("hello")
///     .with_key("customer-42")
///     .with_header("content-type", "text/plain");
/// assert_eq!(&event.payload[..], b"hello");
/// assert_eq!(event.header("content-type").map(|v| &v[..]), Some(&b"text/plain"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Partition key: events with the same key land on the same partition, in order.
    pub key: Option<Bytes>,
    /// The body.
    pub payload: Bytes,
    /// Headers in insertion order.
    pub headers: Headers,
    /// Explicit target partition; overrides the key for placement.
    pub partition: Option<PartitionId>,
    /// Event time set by the producer, if the backend can carry it.
    pub timestamp: Option<SystemTime>,
}

impl Event {
    /// Creates an event with `payload` and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the partition key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Targets an explicit partition.
    pub fn with_partition(mut self, partition: PartitionId) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the event time.
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// First header value with `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        header(&self.headers, name)
    }

    /// Bytes this event occupies on the wire for size limits: key, payload and headers.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.payload.len() + headers
    }
}

pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a Bytes> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A processed position in one partition of a hub. Serializable, so it can be stored outside evhub.
///
/// `offset` is the offset of the last processed event; backends translate it to their own
/// convention (Kafka commits `offset + 1`) internally.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hub (topic) name.
    pub hub: String,
    /// Partition.
    pub partition: PartitionId,
    /// Offset of the last processed event.
    pub offset: i64,
    /// The service's offset string for that event, where the service has one (Event Hubs).
    pub service_offset: Option<String>,
}

/// Acknowledgement of a published event: where the broker stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Partition the event was written to, when the service reports it.
    pub partition: Option<PartitionId>,
    /// Offset in that partition, when the service reports it (Event Hubs does not on send).
    pub offset: Option<i64>,
}

/// An event read from a hub, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// Hub (topic) name, shared by every event of a consumer (cloning it allocates nothing).
    pub hub: Arc<str>,
    /// Partition the event was read from.
    pub partition: PartitionId,
    /// Position within the partition: the Kafka offset, the Event Hubs sequence number.
    /// Increases by one per event on both.
    pub offset: i64,
    /// The service's own offset string where it differs from `offset` (Event Hubs).
    pub service_offset: Option<String>,
    /// When the service stored the event.
    pub enqueued_at: Option<SystemTime>,
    /// Partition key, byte-exact.
    pub key: Option<Bytes>,
    /// The body.
    pub payload: Bytes,
    /// Headers in the order they were sent.
    pub headers: Headers,
}

impl ReceivedEvent {
    /// The checkpoint that marks this event, and every earlier one of its partition, as processed.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            hub: self.hub.to_string(),
            partition: self.partition,
            offset: self.offset,
            service_offset: self.service_offset.clone(),
        }
    }

    /// First header value with `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        header(&self.headers, name)
    }

    /// The event as it would be sent again (for forwarding / transforms), keeping key and headers.
    pub fn to_event(&self) -> Event {
        Event {
            key: self.key.clone(),
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            partition: None,
            timestamp: None,
        }
    }
}
