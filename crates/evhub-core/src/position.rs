//! Where a reader or a new consumer group starts.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Where to start reading a partition.
///
/// Offsets are evhub offsets ([`crate::ReceivedEvent::offset`]): the Kafka offset, the Event Hubs
/// sequence number. Both count events one by one, so one variant serves both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// The oldest retained event.
    Earliest,
    /// Only events enqueued after the reader starts.
    Latest,
    /// The event at this offset (inclusive).
    Offset(i64),
    /// The event after this offset (exclusive), e.g. to resume after a checkpoint.
    After(i64),
    /// The first event enqueued at or after this time.
    Time(SystemTime),
}

/// Where a consumer group with no checkpoint for a partition starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitialPosition {
    /// Read everything retained (the evhub default on every backend: nothing is missed).
    #[default]
    Earliest,
    /// Read only events enqueued after the group first sees the partition.
    Latest,
}

impl From<InitialPosition> for StartPosition {
    fn from(value: InitialPosition) -> Self {
        match value {
            InitialPosition::Earliest => StartPosition::Earliest,
            InitialPosition::Latest => StartPosition::Latest,
        }
    }
}

impl std::str::FromStr for InitialPosition {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => Err(crate::Error::config(format!(
                "unknown initial position `{other}`, expected `earliest` or `latest`"
            ))),
        }
    }
}
