//! Rendering events and times for humans and scripts.

use std::time::SystemTime;

use base64::Engine as _;
use evhub::ReceivedEvent;
use serde_json::{json, Map, Value};

/// RFC 3339 UTC text of a time, e.g. `2026-11-25T16:01:02.345Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{}", t.unix_timestamp()))
}

/// A byte field as `(text, encoding)`: UTF-8 text when valid, else base64.
pub fn bytes_field(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    }
}

/// The JSON line for an event: hub, partition, offset, time, key, headers, payload.
pub fn event_json(event: &ReceivedEvent) -> Value {
    let mut obj = Map::new();
    obj.insert("hub".into(), json!(&*event.hub));
    obj.insert("partition".into(), json!(event.partition));
    obj.insert("offset".into(), json!(event.offset));
    if let Some(service_offset) = &event.service_offset {
        obj.insert("service_offset".into(), json!(service_offset));
    }
    obj.insert("time".into(), json!(event.enqueued_at.map(rfc3339)));
    match &event.key {
        Some(key) => {
            let (text, encoding) = bytes_field(key);
            obj.insert("key".into(), json!(text));
            obj.insert("key_encoding".into(), json!(encoding));
        }
        None => {
            obj.insert("key".into(), Value::Null);
        }
    }
    let headers: Vec<Value> = event
        .headers
        .iter()
        .map(|(name, value)| {
            let (text, encoding) = bytes_field(value);
            json!({ "name": name, "value": text, "encoding": encoding })
        })
        .collect();
    obj.insert("headers".into(), Value::Array(headers));
    let (payload, encoding) = bytes_field(&event.payload);
    obj.insert("payload".into(), json!(payload));
    obj.insert("payload_encoding".into(), json!(encoding));
    Value::Object(obj)
}

/// Left-aligned text table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use evhub::Bytes;

    use super::*;

    #[test]
    fn json_line_marks_utf8_and_base64() {
        let event = ReceivedEvent {
            hub: "orders".into(),
            partition: 2,
            offset: 7,
            service_offset: None,
            enqueued_at: Some(UNIX_EPOCH + Duration::from_millis(1_767_323_045_123)),
            key: Some(Bytes::from_static(&[0xff, 0x00])),
            payload: Bytes::from_static(b"hello"),
            headers: vec![("h".into(), Bytes::from_static(b"v"))],
        };
        let v = event_json(&event);
        assert_eq!(v["hub"], "orders");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["time"], "2026-01-02T03:04:05.123Z");
        assert_eq!(v["key"], "/wA=");
        assert_eq!(v["key_encoding"], "base64");
        assert_eq!(v["headers"][0]["name"], "h");
        assert_eq!(v["headers"][0]["value"], "v");
        assert_eq!(v["headers"][0]["encoding"], "utf8");
        assert_eq!(v["payload"], "hello");
        assert_eq!(v["payload_encoding"], "utf8");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["case", "result"],
            &[
                vec!["a".into(), "passed".into()],
                vec!["long-name".into(), "x".into()],
            ],
        );
        assert_eq!(t, "case       result\na          passed\nlong-name  x\n");
    }
}
