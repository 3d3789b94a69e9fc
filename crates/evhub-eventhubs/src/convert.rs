//! evhub events ↔ AMQP messages.
//!
//! Payload = one `data` section; headers = application properties stored as binary; partition
//! key = the `x-opt-partition-key` annotation (a string, so keys must be UTF-8). On receive,
//! string and symbol properties written by other Event Hubs clients read back as their UTF-8
//! bytes, other simple values as their text form.

use azure_core_amqp::message::{AmqpApplicationProperties, AmqpMessageBody, AmqpMessageProperties};
use azure_core_amqp::{AmqpMessage, AmqpSimpleValue, AmqpSymbol, AmqpTimestamp, AmqpValue};
use azure_messaging_eventhubs::models::ReceivedEventData;
use std::sync::Arc;

use bytes::Bytes;
use evhub_core::{Error, Event, PartitionId, ReceivedEvent, Result};

pub(crate) const PARTITION_KEY: &str = "x-opt-partition-key";

/// The partition key of `event` as the string Event Hubs needs.
pub(crate) fn partition_key(event: &Event) -> Result<Option<String>> {
    match &event.key {
        None => Ok(None),
        Some(key) => std::str::from_utf8(key)
            .map(|k| Some(k.to_owned()))
            .map_err(|_| {
                Error::invalid_input(
                    "Event Hubs partition keys are strings: the key is not valid UTF-8 \
                 (capability binary_keys = false)",
                )
            }),
    }
}

#[cfg(test)]
pub(crate) fn to_message(event: &Event) -> Result<AmqpMessage> {
    to_message_with_id(event, azure_core::Uuid::new_v4())
}

/// Builds the AMQP message for `event` with `message_id` ([`MessageIds`] makes unique ones
/// without a random-number syscall per event). Fails with `InvalidInput` for a non-UTF-8 key
/// or a repeated header name (AMQP application properties are a map).
pub(crate) fn to_message_with_id(
    event: &Event,
    message_id: azure_core::Uuid,
) -> Result<AmqpMessage> {
    let key = partition_key(event)?;
    let mut properties = AmqpApplicationProperties::new();
    for (name, value) in &event.headers {
        if properties.0.contains_key(name) {
            return Err(Error::invalid_input(format!(
                "header `{name}` appears twice; Event Hubs application properties are a map"
            )));
        }
        properties.insert(name.clone(), AmqpSimpleValue::Binary(value.to_vec()));
    }
    let mut message = AmqpMessage::builder()
        .with_body(AmqpMessageBody::Binary(vec![event.payload.to_vec()]))
        .build();
    if !properties.0.is_empty() {
        message.application_properties = Some(properties);
    }
    message.properties = Some(AmqpMessageProperties {
        message_id: Some(message_id.into()),
        creation_time: event.timestamp.map(|t| AmqpTimestamp(Some(t))),
        ..Default::default()
    });
    if let Some(key) = key {
        message.add_message_annotation(AmqpSymbol::from(PARTITION_KEY), key);
    }
    Ok(message)
}

/// Unique message ids: a random 64-bit prefix per producer and a counter.
#[derive(Debug)]
pub(crate) struct MessageIds {
    prefix: u64,
    next: std::sync::atomic::AtomicU64,
}

impl MessageIds {
    pub(crate) fn new() -> Self {
        let (prefix, _) = azure_core::Uuid::new_v4().as_u64_pair();
        Self {
            prefix,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> azure_core::Uuid {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Version 4 / RFC 4122 variant bits kept, so the id still reads as a random UUID.
        let high = (self.prefix & !0xf000) | 0x4000;
        let low = (n & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        azure_core::Uuid::from_u64_pair(high, low)
    }
}

/// An upper bound of the encoded size of `event`'s message (AMQP section and value headers
/// at their widest), so the exact size is computed only for events near the link's limit.
pub(crate) fn encoded_size_bound(event: &Event) -> usize {
    // Header, properties (message id, creation time), section descriptors and constructors.
    const FIXED: usize = 160;
    // Partition-key annotation: map header, `x-opt-partition-key` symbol, string header.
    const KEY: usize = 48;
    // One application property: str32 and vbin32 headers.
    const PER_HEADER: usize = 10;
    let headers: usize = event
        .headers
        .iter()
        .map(|(k, v)| PER_HEADER + k.len() + v.len())
        .sum();
    FIXED + event.payload.len() + 9 + headers + event.key.as_ref().map_or(0, |k| KEY + k.len())
}

/// Serialized size of the message for `event`, as the service measures it.
pub(crate) fn encoded_size(message: &AmqpMessage) -> Result<usize> {
    AmqpMessage::serialize(message)
        .map(|bytes| bytes.len())
        .map_err(|e| Error::invalid_input(format!("event cannot be encoded: {e}")).with_source(e))
}

/// Converts a received SDK event.
pub(crate) fn from_received(
    hub: &Arc<str>,
    partition: PartitionId,
    data: &ReceivedEventData,
) -> Result<ReceivedEvent> {
    let sequence = data.sequence_number().ok_or_else(|| {
        Error::new(
            evhub_core::ErrorKind::Protocol,
            "received an event without x-opt-sequence-number",
        )
    })?;
    let message = data.raw_amqp_message();
    let headers = message
        .application_properties
        .as_ref()
        .map(|props| {
            props
                .0
                .iter()
                .map(|(k, v)| (k.clone(), simple_value_bytes(v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(ReceivedEvent {
        hub: hub.clone(),
        partition,
        offset: sequence,
        service_offset: data.offset().clone(),
        enqueued_at: data.enqueued_time(),
        key: data.partition_key().clone().map(Bytes::from),
        payload: body_bytes(&message.body),
        headers,
    })
}

fn body_bytes(body: &AmqpMessageBody) -> Bytes {
    match body {
        AmqpMessageBody::Binary(sections) if sections.len() == 1 => {
            Bytes::copy_from_slice(&sections[0])
        }
        AmqpMessageBody::Binary(sections) => Bytes::from(sections.concat()),
        AmqpMessageBody::Value(value) => value_bytes(value),
        AmqpMessageBody::Sequence(lists) => Bytes::from(format!("{lists:?}")),
        _ => Bytes::new(),
    }
}

fn value_bytes(value: &AmqpValue) -> Bytes {
    match value {
        AmqpValue::Binary(b) => Bytes::copy_from_slice(b),
        AmqpValue::String(s) => Bytes::copy_from_slice(s.as_bytes()),
        AmqpValue::Symbol(s) => Bytes::copy_from_slice(s.0.as_bytes()),
        AmqpValue::Null => Bytes::new(),
        other => Bytes::from(format!("{other:?}")),
    }
}

/// Header value bytes: binary as is, strings as UTF-8, other simple values as text.
pub(crate) fn simple_value_bytes(value: &AmqpSimpleValue) -> Bytes {
    use AmqpSimpleValue as V;
    let text = match value {
        V::Binary(b) => return Bytes::copy_from_slice(b),
        V::String(s) => return Bytes::copy_from_slice(s.as_bytes()),
        V::Symbol(s) => return Bytes::copy_from_slice(s.0.as_bytes()),
        V::Null => return Bytes::new(),
        V::Boolean(v) => v.to_string(),
        V::UByte(v) => v.to_string(),
        V::Byte(v) => v.to_string(),
        V::Char(v) => v.to_string(),
        V::UShort(v) => v.to_string(),
        V::Short(v) => v.to_string(),
        V::UInt(v) => v.to_string(),
        V::Int(v) => v.to_string(),
        V::ULong(v) => v.to_string(),
        V::Long(v) => v.to_string(),
        V::Float(v) => v.to_string(),
        V::Double(v) => v.to_string(),
        V::Uuid(v) => v.to_string(),
        V::TimeStamp(AmqpTimestamp(Some(t))) => t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().to_string())
            .unwrap_or_default(),
        other => format!("{other:?}"),
    };
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::message::AmqpAnnotations;

    fn received(message: AmqpMessage) -> ReceivedEventData {
        ReceivedEventData::from(message)
    }

    fn with_position(mut message: AmqpMessage, seq: i64) -> AmqpMessage {
        let mut annotations = message.message_annotations.take().unwrap_or_default();
        annotations.insert(AmqpSymbol::from("x-opt-sequence-number"), seq);
        annotations.insert(AmqpSymbol::from("x-opt-offset"), "4096");
        message.message_annotations = Some(annotations);
        message
    }

    #[test]
    fn headers_key_and_payload_round_trip_byte_exact() {
        let event = Event::new(vec![0u8, 255, 1])
            .with_key("ключ")
            .with_header("bin", vec![0u8, 159, 255])
            .with_header("empty", Bytes::new())
            .with_header("naïve-名前", "värde");
        let message = to_message(&event).unwrap();
        let got = from_received(&Arc::from("h"), 3, &received(with_position(message, 7))).unwrap();
        assert_eq!(got.payload, event.payload);
        assert_eq!(got.key, event.key);
        assert_eq!(got.headers, event.headers);
        assert_eq!((got.partition, got.offset), (3, 7));
        assert_eq!(got.service_offset.as_deref(), Some("4096"));
    }

    #[test]
    fn non_utf8_key_and_repeated_header_are_invalid_input() {
        let e = to_message(&Event::new("x").with_key(vec![0xffu8, 0xfe])).unwrap_err();
        let ids = MessageIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        for event in [
            Event::new(""),
            Event::new(vec![7u8; 300]).with_key("k"),
            Event::new(vec![1u8; 70_000])
                .with_key("a-longer-partition-key")
                .with_header("h1", vec![0u8; 300])
                .with_header("content-type", "application/json")
                .with_timestamp(std::time::SystemTime::now()),
        ] {
            let exact = encoded_size(&to_message_with_id(&event, ids.next()).unwrap()).unwrap();
            assert!(exact <= encoded_size_bound(&event), "{exact} > bound");
        }
        assert_eq!(e.kind(), evhub_core::ErrorKind::InvalidInput);
        let e =
            to_message(&Event::new("x").with_header("a", "1").with_header("a", "2")).unwrap_err();
        assert_eq!(e.kind(), evhub_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn properties_from_other_clients_read_as_bytes() {
        let mut props = AmqpApplicationProperties::new();
        props.insert("s".into(), "text");
        props.insert("n".into(), 42i32);
        props.insert("b".into(), true);
        let mut message = AmqpMessage::builder()
            .with_body(AmqpValue::String("body text".into()))
            .with_application_properties(props)
            .build();
        message.message_annotations = Some(AmqpAnnotations::new());
        let got = from_received(&Arc::from("h"), 0, &received(with_position(message, 1))).unwrap();
        assert_eq!(&got.payload[..], b"body text");
        assert_eq!(got.header("s").map(|v| &v[..]), Some(&b"text"[..]));
        assert_eq!(got.header("n").map(|v| &v[..]), Some(&b"42"[..]));
        assert_eq!(got.header("b").map(|v| &v[..]), Some(&b"true"[..]));
    }

    #[test]
    fn missing_sequence_number_is_a_protocol_error() {
        let message = AmqpMessage::builder().with_body(vec![1u8]).build();
        let e = from_received(&Arc::from("h"), 0, &received(message)).unwrap_err();
        assert_eq!(e.kind(), evhub_core::ErrorKind::Protocol);
    }
}
