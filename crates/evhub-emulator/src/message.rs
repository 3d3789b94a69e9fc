//! The message type the emulator receives, stores and delivers, and the
//! Event Hubs annotations it reads and writes.
//!
//! Bodies stay opaque, as they are to the service: a body section's value is
//! kept as its encoded bytes ([`LazyValue`]) and sent on unchanged, never
//! decoded. Only header, annotations and properties are decoded.

use fe2o3_amqp_types::{
    messaging::{annotations::OwnedKey, Body, Message},
    primitives::{SimpleValue, Symbol, Value},
};
use serde_amqp::lazy::LazyValue;

/// An event or node request as received: sections decoded, body opaque.
pub(crate) type OpaqueMessage = Message<Body<LazyValue>>;

/// Annotation: sequence number of a stored event (long).
pub(crate) const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
/// Annotation: offset of a stored event (string).
pub(crate) const OFFSET: &str = "x-opt-offset";
/// Annotation: enqueued time of a stored event (timestamp).
pub(crate) const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
/// Annotation: partition key set by the sender (string).
pub(crate) const PARTITION_KEY: &str = "x-opt-partition-key";

/// A message annotation by name.
pub(crate) fn annotation<'a>(message: &'a OpaqueMessage, name: &str) -> Option<&'a Value> {
    message
        .message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(name)))
}

/// The partition key annotation of a message, if it is a string.
pub(crate) fn partition_key_of(message: &OpaqueMessage) -> Option<String> {
    match annotation(message, PARTITION_KEY)? {
        Value::String(key) => Some(key.clone()),
        Value::Symbol(key) => Some(key.as_str().to_string()),
        _ => None,
    }
}

/// Text of an application property that SDKs send as string, symbol or binary.
pub(crate) fn text_value(value: &SimpleValue) -> Option<String> {
    match value {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_string()),
        SimpleValue::Binary(b) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    }
}

/// An application property of a request as text.
pub(crate) fn property(request: &OpaqueMessage, name: &str) -> Option<String> {
    request
        .application_properties
        .as_ref()
        .and_then(|p| p.0.get(name))
        .and_then(text_value)
}

/// The text of an amqp-value body holding a string (or UTF-8 binary), read
/// straight from its encoding without a general decoder.
pub(crate) fn body_text(message: &OpaqueMessage) -> Option<String> {
    let Body::Value(value) = &message.body else {
        return None;
    };
    let bytes = value.0.as_slice();
    let header: usize = match *bytes.first()? {
        0xa0 | 0xa1 => 2,
        0xb0 | 0xb1 => 5,
        _ => return None,
    };
    let len = if header == 2 {
        usize::from(*bytes.get(1)?)
    } else {
        u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize
    };
    let data = bytes.get(header..header.checked_add(len)?)?;
    String::from_utf8(data.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::AmqpValue;

    #[test]
    fn body_text_reads_strings_and_binary_only() {
        let message = |value: Value| -> OpaqueMessage {
            let lazy = serde_amqp::lazy::to_lazy_value(&value).unwrap();
            Message::builder()
                .body(Body::Value(AmqpValue(lazy)))
                .build()
        };
        assert_eq!(
            body_text(&message(Value::String("token".into()))).as_deref(),
            Some("token")
        );
        let long = "x".repeat(300);
        assert_eq!(body_text(&message(Value::String(long.clone()))), Some(long));
        assert_eq!(
            body_text(&message(Value::Binary(b"bin".to_vec().into()))).as_deref(),
            Some("bin")
        );
        assert_eq!(body_text(&message(Value::Long(1))), None);
    }
}
