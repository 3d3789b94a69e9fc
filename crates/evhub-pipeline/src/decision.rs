//! What a handler decides for one source event.

use evhub_core::Event;

/// The handler's verdict on one source event.
///
/// The source checkpoint moves past the event only after the decision is carried out: every
/// [`Output`] acknowledged by its sink, or the event written to the dead-letter hub.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Processed; nothing to send (a loader that wrote the event somewhere itself).
    Done,
    /// Send these events; each goes to every sink unless [`Output::to`] names one.
    Emit(Vec<Output>),
    /// Deliberately not processed (filtered out); counted as skipped.
    Skip,
    /// Reject the event: it goes to the dead-letter hub with this reason (the pipeline stops on
    /// the partition when no dead-letter hub is configured).
    DeadLetter(String),
}

impl Decision {
    /// Sends one event to every sink.
    pub fn forward(event: Event) -> Self {
        Self::Emit(vec![Output::new(event)])
    }

    /// Sends events to every sink.
    pub fn emit(events: impl IntoIterator<Item = Event>) -> Self {
        Self::Emit(events.into_iter().map(Output::new).collect())
    }

    /// Rejects the event into the dead-letter hub.
    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Self::DeadLetter(reason.into())
    }
}

/// One event derived from a source event, for all sinks or for one named sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The event to send.
    pub event: Event,
    /// Sink name; `None` sends to every sink.
    pub sink: Option<String>,
}

impl Output {
    /// An event for every sink.
    pub fn new(event: Event) -> Self {
        Self { event, sink: None }
    }

    /// An event for the sink registered as `sink`.
    pub fn to(sink: impl Into<String>, event: Event) -> Self {
        Self {
            event,
            sink: Some(sink.into()),
        }
    }
}

impl From<Event> for Output {
    fn from(event: Event) -> Self {
        Self::new(event)
    }
}
