//! The full conformance suite against the `eventhubs` backend on the in-process emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use evhub_conformance::Harness;
use evhub_core::{Backend, Result};

struct EmulatorHarness {
    checkpoint_store: String,
}

#[evhub_core::async_trait]
impl Harness for EmulatorHarness {
    fn name(&self) -> String {
        format!("eventhubs (emulator, {})", self.checkpoint_store)
    }

    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        common::backend(&self.checkpoint_store).await
    }

    // Event Hubs creates hubs and consumer groups through Azure Resource Manager, not over
    // AMQP; the emulator's library API stands in for it.
    async fn create_hub(&self, name: &str, partitions: u32) -> Result<()> {
        common::create_hub(name, partitions)
    }

    async fn create_group(&self, hub: &str, group: &str) -> Result<()> {
        common::create_group(hub, group)
    }
}

fn harness() -> EmulatorHarness {
    EmulatorHarness {
        checkpoint_store: "memory://conformance".to_owned(),
    }
}

evhub_conformance::conformance_tests!(harness());

/// The consumer-group cases again with checkpoints and ownership in a local directory (the
/// object-store flavour the suite above does not use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_cases_with_local_directory_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let harness = EmulatorHarness {
        checkpoint_store: url.to_string(),
    };
    for case in [
        "commit_then_new_member_resumes",
        "uncommitted_events_redelivered_after_leave",
        "restart_resumes_after_last_commit",
    ] {
        let report = evhub_conformance::run_case(case, &harness).await;
        assert_eq!(
            report.outcome,
            evhub_conformance::Outcome::Passed,
            "{case} with {}",
            harness.name()
        );
    }
}
