//! Typed errors shared by every backend.

use std::fmt;

/// Boxed error kept as the [`std::error::Error::source`] of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout evhub.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the backend that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid (unknown key, bad value, malformed URL or connection string).
    Config,
    /// Authentication or authorization failed.
    Auth,
    /// The hub, partition or consumer group does not exist.
    NotFound,
    /// The event is larger than the backend accepts.
    TooLarge,
    /// The service cannot be reached or is temporarily overloaded.
    Unavailable,
    /// An operation did not complete in time.
    Timeout,
    /// The producer, consumer or reader was closed.
    Closed,
    /// The caller passed an argument the operation cannot accept.
    InvalidInput,
    /// Another member owns the partition now (rebalance, stolen link, lost ownership claim).
    Conflict,
    /// The peer violated the protocol or answered something unexpected.
    Protocol,
    /// The backend does not support the operation (see [`crate::Capabilities`]).
    Unsupported,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether an error of this kind is usually worth retrying.
    pub fn default_retriable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// Stable lowercase name, used in messages and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not found",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of every evhub operation.
///
/// Carries a [`kind`](Error::kind), a human message that never contains secrets, a
/// retriable flag and the backend error as its `source`.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retriable: bool,
    source: Option<BoxError>,
}

impl Error {
    /// Creates an error of `kind` with `message`; retriable per [`ErrorKind::default_retriable`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retriable: kind.default_retriable(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether the error is retriable.
    pub fn with_retriable(mut self, retriable: bool) -> Self {
        self.retriable = retriable;
        self
    }

    /// Shorthand for an [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::Closed`] error.
    pub fn closed(what: &str) -> Self {
        Self::new(ErrorKind::Closed, format!("{what} is closed"))
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error naming the backend and operation.
    pub fn unsupported(backend: &str, operation: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("backend `{backend}` does not support {operation}"),
        )
    }

    /// Shorthand for an [`ErrorKind::TooLarge`] error.
    pub fn too_large(size: usize, max: usize) -> Self {
        Self::new(
            ErrorKind::TooLarge,
            format!("event of {size} bytes exceeds the maximum of {max} bytes"),
        )
    }

    /// Shorthand for an [`ErrorKind::Timeout`] error.
    pub fn timeout(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, format!("timed out: {}", what.into()))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The message, without kind prefix or source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("message", &self.message)
            .field("retriable", &self.retriable);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_defaults_follow_kind() {
        assert!(Error::new(ErrorKind::Unavailable, "x").is_retriable());
        assert!(Error::timeout("x").is_retriable());
        assert!(!Error::config("x").is_retriable());
        assert!(Error::config("x").with_retriable(true).is_retriable());
    }

    #[test]
    fn display_has_kind_and_message_and_source_is_kept() {
        let io = std::io::Error::other("socket");
        let e = Error::new(ErrorKind::Unavailable, "broker down").with_source(io);
        assert_eq!(e.to_string(), "unavailable: broker down");
        let src = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(src.as_deref(), Some("socket"));
    }
}
