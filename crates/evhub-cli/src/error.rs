//! CLI errors, exit codes and the one-line, secret-free error message.

use std::fmt;

use evhub::ErrorKind;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: runtime error (service unreachable, timeout, hub not found, ...).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: `evhub check` found failing cases.
pub const EXIT_CHECK_FAILED: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// Bad combination of flags or missing input the parser cannot catch.
    Usage(String),
    /// An evhub operation failed.
    Evhub(evhub::Error),
    /// Local I/O failed (reading input, writing output).
    Io(String, std::io::Error),
    /// Conformance cases failed.
    CheckFailed {
        /// Failed cases.
        failed: usize,
        /// Cases run.
        total: usize,
    },
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// Shorthand for a usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Evhub(e) if e.kind() == ErrorKind::Config => EXIT_USAGE,
            CliError::Evhub(_) | CliError::Io(..) => EXIT_RUNTIME,
            CliError::CheckFailed { .. } => EXIT_CHECK_FAILED,
        }
    }

    /// `<kind>: <message>`, on one line.
    pub fn one_line(&self) -> String {
        let text = self.to_string();
        text.split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "usage: {message}"),
            CliError::Evhub(e) => write!(f, "{}: {}", e.kind(), e.message()),
            CliError::Io(what, e) => write!(f, "io: {what}: {e}"),
            CliError::CheckFailed { failed, total } => {
                write!(f, "check: {failed} of {total} conformance cases failed")
            }
        }
    }
}

impl From<evhub::Error> for CliError {
    fn from(e: evhub::Error) -> Self {
        CliError::Evhub(e)
    }
}

/// Removes every known secret value from `text`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    // Longest first, so a secret containing another one is removed whole.
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in sorted {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind() {
        assert_eq!(CliError::usage("x").exit_code(), EXIT_USAGE);
        assert_eq!(
            CliError::from(evhub::Error::config("bad")).exit_code(),
            EXIT_USAGE
        );
        assert_eq!(
            CliError::from(evhub::Error::not_found("hub")).exit_code(),
            EXIT_RUNTIME
        );
        assert_eq!(
            CliError::CheckFailed {
                failed: 1,
                total: 2
            }
            .exit_code(),
            EXIT_CHECK_FAILED
        );
    }

    #[test]
    fn one_line_and_scrubbed() {
        let e = CliError::from(evhub::Error::new(
            ErrorKind::Unavailable,
            "broker down\nlogin hunter2 failed\r\n",
        ));
        let line = e.one_line();
        assert_eq!(line, "unavailable: broker down login hunter2 failed");
        assert_eq!(
            scrub(&line, &["hunter2".into(), "x".into()]),
            "unavailable: broker down login *** failed"
        );
    }
}
