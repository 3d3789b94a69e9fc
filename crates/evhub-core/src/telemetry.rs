//! Tracing spans with OpenTelemetry messaging attribute names, and W3C `traceparent`
//! propagation in event headers so a trace follows an event across a hub on every backend.
//!
//! ```
//! use evhub_core::{telemetry::TraceContext, Event};
//! let ctx = TraceContext::new_root();
//! let mut event = Event::new("payload");
//! ctx.inject(&mut event.headers);
//! let extracted = TraceContext::extract(&event.headers).expect("header present");
//! assert_eq!(extracted.trace_id(), ctx.trace_id());
//! ```

use std::fmt;

use bytes::Bytes;
use rand::RngCore;
use tracing::Span;

use crate::event::{Headers, PartitionId};

/// Header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Span for publishing to `hub` (`messaging.operation.type = send`).
pub fn send_span(system: &'static str, hub: &str, partition: Option<PartitionId>) -> Span {
    tracing::info_span!(
        "evhub.send",
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.destination.name = hub,
        messaging.destination.partition.id = partition.map(|p| p.to_string()),
        messaging.batch.message_count = tracing::field::Empty,
        messaging.message.id = tracing::field::Empty,
    )
}

/// Span for receiving one event (`messaging.operation.type = receive`).
pub fn receive_span(
    system: &'static str,
    hub: &str,
    group: Option<&str>,
    partition: PartitionId,
    offset: i64,
) -> Span {
    tracing::debug_span!(
        "evhub.receive",
        otel.kind = "consumer",
        messaging.system = system,
        messaging.operation.type = "receive",
        messaging.destination.name = hub,
        messaging.consumer.group.name = group,
        messaging.destination.partition.id = partition,
        messaging.message.id = offset,
    )
}

/// Span for committing a checkpoint (`messaging.operation.type = settle`).
pub fn commit_span(
    system: &'static str,
    hub: &str,
    group: &str,
    partition: PartitionId,
    offset: i64,
) -> Span {
    tracing::debug_span!(
        "evhub.commit",
        messaging.system = system,
        messaging.operation.type = "settle",
        messaging.destination.name = hub,
        messaging.consumer.group.name = group,
        messaging.destination.partition.id = partition,
        messaging.kafka.offset = offset,
    )
}

/// A W3C trace context (`traceparent` version 00).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// A context from its parts. Returns `None` for the invalid all-zero ids.
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new sampled root context with random ids.
    pub fn new_root() -> Self {
        let mut rng = rand::thread_rng();
        loop {
            let mut trace_id = [0; 16];
            let mut span_id = [0; 8];
            rng.fill_bytes(&mut trace_id);
            rng.fill_bytes(&mut span_id);
            if let Some(ctx) = Self::from_parts(trace_id, span_id, 1) {
                return ctx;
            }
        }
    }

    /// A child context: same trace, new span id (for the consumer side of a hop).
    pub fn child(&self) -> Self {
        let mut rng = rand::thread_rng();
        loop {
            let mut span_id = [0; 8];
            rng.fill_bytes(&mut span_id);
            if span_id != [0; 8] {
                return Self { span_id, ..*self };
            }
        }
    }

    /// Trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// Parent span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Parses a `traceparent` value (`00-<trace-id>-<span-id>-<flags>`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let mut trace_id = [0; 16];
        let mut span_id = [0; 8];
        unhex(trace, &mut trace_id)?;
        unhex(span, &mut span_id)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Self::from_parts(trace_id, span_id, flags)
    }

    /// Writes this context as the `traceparent` header, replacing an existing one.
    pub fn inject(&self, headers: &mut Headers) {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(TRACEPARENT));
        headers.push((TRACEPARENT.to_owned(), Bytes::from(self.to_string())));
    }

    /// Reads the `traceparent` header, if present and valid.
    pub fn extract(headers: &Headers) -> Option<Self> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .and_then(Self::parse)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str, out: &mut [u8]) -> Option<()> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(v).unwrap();
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        assert!(ctx.is_sampled());
        assert_eq!(ctx.to_string(), v);
    }

    #[test]
    fn rejects_invalid_values() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn inject_replaces_and_child_keeps_trace() {
        let mut headers = vec![("traceparent".to_string(), Bytes::from_static(b"junk"))];
        let ctx = TraceContext::new_root();
        ctx.inject(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(TraceContext::extract(&headers), Some(ctx));
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert_ne!(child.span_id(), ctx.span_id());
    }
}
