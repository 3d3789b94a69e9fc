//! Typed errors returned by the emulator's public API.

use std::{io, net::SocketAddr, path::PathBuf};

/// Errors from configuring, starting or administering the emulator.
///
/// Network and protocol problems of individual clients never surface here: they
/// close the offending connection or link with an AMQP error and are logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A configuration file could not be read.
    #[error("could not read config file {path}")]
    ConfigRead {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A configuration file could not be parsed.
    #[error("could not parse config file {path}: {message}")]
    ConfigParse {
        /// The file that was parsed.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },

    /// A listening socket could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// TLS could not be set up (certificate files, key or generation).
    #[error("TLS setup failed: {0}")]
    Tls(String),

    /// Reading or writing the event store under `data_dir` failed.
    #[error("storage error at {path}")]
    Storage {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A stored event file is corrupt.
    #[error("corrupt event store {path}: {message}")]
    CorruptStore {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A hub with this name already exists.
    #[error("event hub {0:?} already exists")]
    HubExists(String),

    /// No hub with this name exists.
    #[error("event hub {0:?} does not exist")]
    UnknownHub(String),
}

/// Result type of the emulator's public API.
pub type Result<T, E = EmulatorError> = std::result::Result<T, E>;
