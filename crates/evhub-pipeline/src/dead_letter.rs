//! Dead-letter events: the source event byte-exact (key, payload, headers) plus headers that
//! say why it could not be processed, and the reverse for replaying it.
//!
//! ```
//! use evhub_core::{Event, ReceivedEvent};
//! use evhub_pipeline::dead_letter::{self, headers, DeadLetterReason, Reason};
//! # let source = ReceivedEvent { hub: "orders".into(), partition: 2, offset: 41,
//! #     service_offset: None, enqueued_at: None, key: Some("k".into()),
//! #     payload: "not json".into(), headers: vec![("h".into(), "v".into())] };
//! let reason = Reason::rejected("payload is not JSON");
//! let dlq = dead_letter::to_dead_letter(&source, "billing", &reason);
//! assert_eq!(dlq.payload, source.payload);
//! assert_eq!(dlq.header(headers::REASON).map(|v| &v[..]), Some(&b"rejected"[..]));
//! assert_eq!(dlq.header(headers::SOURCE_OFFSET).map(|v| &v[..]), Some(&b"41"[..]));
//! let original: Event = dead_letter::original_event(&dlq);
//! assert_eq!(original.headers, source.headers);
//! # let _ = DeadLetterReason::Rejected;
//! ```

use std::time::SystemTime;

use evhub_core::config::is_secret_key;
use evhub_core::{Bytes, Error, Event, Headers, ReceivedEvent};

/// Names of the headers a dead-letter event carries in addition to its own.
pub mod headers {
    /// Prefix shared by every dead-letter header (stripped on replay).
    pub const PREFIX: &str = "evhub.dlq.";
    /// `rejected` (handler decision), `non-retriable` or `retries-exhausted`.
    pub const REASON: &str = "evhub.dlq.reason";
    /// Error kind (`invalid input`, `unavailable`, ...; `rejected` for handler decisions).
    pub const ERROR_KIND: &str = "evhub.dlq.error.kind";
    /// Error message, with secret-looking `key=value` parts redacted, at most 1024 bytes.
    pub const ERROR_MESSAGE: &str = "evhub.dlq.error.message";
    /// Source hub.
    pub const SOURCE_HUB: &str = "evhub.dlq.source.hub";
    /// Source partition.
    pub const SOURCE_PARTITION: &str = "evhub.dlq.source.partition";
    /// Source offset (Kafka offset, Event Hubs sequence number).
    pub const SOURCE_OFFSET: &str = "evhub.dlq.source.offset";
    /// Consumer group of the pipeline.
    pub const SOURCE_GROUP: &str = "evhub.dlq.source.group";
    /// Attempts made (1 for a non-retriable error or a rejection).
    pub const ATTEMPTS: &str = "evhub.dlq.attempts";
    /// First failure, RFC 3339 UTC.
    pub const FIRST_FAILURE: &str = "evhub.dlq.first-failure";
    /// Last failure, RFC 3339 UTC.
    pub const LAST_FAILURE: &str = "evhub.dlq.last-failure";
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The handler returned [`Decision::DeadLetter`](crate::Decision::DeadLetter).
    Rejected,
    /// The handler or a sink failed with an error that is not retriable.
    NonRetriable,
    /// Retriable failures exhausted the retry policy (attempts or time).
    RetriesExhausted,
}

impl DeadLetterReason {
    /// The value of the [`headers::REASON`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::NonRetriable => "non-retriable",
            Self::RetriesExhausted => "retries-exhausted",
        }
    }
}

/// Everything the dead-letter headers say about a failure.
#[derive(Debug, Clone)]
pub struct Reason {
    /// Why.
    pub reason: DeadLetterReason,
    /// Error kind text.
    pub kind: String,
    /// Error message (redacted when written).
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// First failure.
    pub first_failure: SystemTime,
    /// Last failure.
    pub last_failure: SystemTime,
}

impl Reason {
    /// A handler rejection now.
    pub fn rejected(message: impl Into<String>) -> Self {
        let now = SystemTime::now();
        Self {
            reason: DeadLetterReason::Rejected,
            kind: "rejected".to_owned(),
            message: message.into(),
            attempts: 1,
            first_failure: now,
            last_failure: now,
        }
    }

    /// A failure after `attempts` attempts, the last with `error`.
    pub fn failed(error: &Error, attempts: u32, first: SystemTime, last: SystemTime) -> Self {
        Self {
            reason: if error.is_retriable() {
                DeadLetterReason::RetriesExhausted
            } else {
                DeadLetterReason::NonRetriable
            },
            kind: error.kind().to_string(),
            message: error.message().to_owned(),
            attempts,
            first_failure: first,
            last_failure: last,
        }
    }
}

/// The dead-letter event for `source`: key, payload and headers byte-exact, then the reason
/// headers. No partition is set (the dead-letter hub may have any partition count; the key
/// keeps events of one key together).
pub fn to_dead_letter(source: &ReceivedEvent, group: &str, reason: &Reason) -> Event {
    let mut event = source.to_event();
    let mut add = |name: &str, value: String| event.headers.push((name.to_owned(), value.into()));
    add(headers::REASON, reason.reason.as_str().to_owned());
    add(headers::ERROR_KIND, reason.kind.clone());
    add(headers::ERROR_MESSAGE, redact(&reason.message));
    add(headers::SOURCE_HUB, source.hub.to_string());
    add(headers::SOURCE_PARTITION, source.partition.to_string());
    add(headers::SOURCE_OFFSET, source.offset.to_string());
    add(headers::SOURCE_GROUP, group.to_owned());
    add(headers::ATTEMPTS, reason.attempts.to_string());
    add(headers::FIRST_FAILURE, rfc3339(reason.first_failure));
    add(headers::LAST_FAILURE, rfc3339(reason.last_failure));
    event
}

/// The event as it was before it was dead-lettered: same key and payload, headers without the
/// `evhub.dlq.*` ones (use [`ReceivedEvent::to_event`] on a received dead-letter event).
pub fn original_event(dead_letter: &Event) -> Event {
    Event {
        key: dead_letter.key.clone(),
        payload: dead_letter.payload.clone(),
        headers: dead_letter
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with(headers::PREFIX))
            .cloned()
            .collect(),
        partition: None,
        timestamp: None,
    }
}

/// A header value as text (lossy), for display.
pub fn header_text(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v): &(String, Bytes)| String::from_utf8_lossy(v).into_owned())
}

/// RFC 3339 UTC with exactly three fraction digits, so times also sort as text.
pub fn rfc3339(at: SystemTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(at)
        .format(FORMAT)
        .unwrap_or_else(|_| "unknown".to_owned())
}

const MAX_MESSAGE: usize = 1024;

/// Error text for a header: control characters become spaces, `key=value` parts whose key
/// looks secret (password, key, token, connection string, ...) keep the key only, and the text
/// is cut at 1024 bytes. evhub errors are secret-free already; handler messages may not be.
pub fn redact(message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(clean.len());
    for (i, word) in clean.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let parts: Vec<String> = word
            .split(';')
            .map(|part| match part.split_once(['=', ':']) {
                Some((k, v)) if !v.is_empty() && is_secret_key(k.trim_matches(['"', '\''])) => {
                    format!("{k}=***")
                }
                _ => part.to_owned(),
            })
            .collect();
        out.push_str(&parts.join(";"));
    }
    if out.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_length_bounded() {
        let m = redact(
            "connect failed: Endpoint=sb://x/;SharedAccessKey=abc123== password=hunter2\nnext",
        );
        assert!(!m.contains("abc123"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("Endpoint=sb://x/"), "{m}");
        assert!(!m.contains('\n'));
        assert!(redact(&"é".repeat(2000)).len() <= MAX_MESSAGE);
    }

    #[test]
    fn time_is_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_123);
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05.123Z");
        let round = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_100);
        assert_eq!(rfc3339(round), "2026-01-02T03:04:05.100Z", "fixed width");
    }
}
