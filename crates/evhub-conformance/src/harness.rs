//! How the suite reaches a backend, and what it reports.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evhub_core::{Backend, HubOptions, Result};

/// Connects the suite to the backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Name shown in reports, e.g. `kafka` or `eventhubs (emulator)`.
    fn name(&self) -> String;

    /// Why every case must be skipped (no server configured), or `None` to run.
    fn skip_reason(&self) -> Option<String> {
        None
    }

    /// A new, independent connection, as another process of the service would have.
    async fn connect(&self) -> Result<Arc<dyn Backend>>;

    /// Creates a hub for one case. The default uses [`Backend::create_hub`]; harnesses of
    /// services that cannot create hubs through the data plane override it (admin API,
    /// emulator configuration).
    async fn create_hub(&self, name: &str, partitions: u32) -> Result<()> {
        self.connect()
            .await?
            .create_hub(name, HubOptions::with_partitions(partitions))
            .await
    }

    /// Creates a consumer group on a hub created by [`Harness::create_hub`]. The default does
    /// nothing: Kafka creates groups on first use. Event Hubs harnesses create it.
    async fn create_group(&self, hub: &str, group: &str) -> Result<()> {
        let _ = (hub, group);
        Ok(())
    }

    /// How long a case waits for events or for a consumer group to settle.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// How long a case watches for events that must not arrive.
    fn quiet_period(&self) -> Duration {
        Duration::from_millis(750)
    }
}

/// Result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// Not run, with the reason (a capability the backend lacks, no server configured).
    Skipped(String),
    /// An assertion failed or an operation errored.
    Failed(String),
}

/// One case's report.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Case name.
    pub case: String,
    /// Harness name.
    pub backend: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}
