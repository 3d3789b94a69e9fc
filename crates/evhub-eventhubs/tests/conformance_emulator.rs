//! The full conformance suite against the `eventhubs` backend on the in-process emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use evhub_conformance::Harness;
use evhub_core::{Backend, Result};

struct EmulatorHarness {
    checkpoint_store: &'static str,
}

#[evhub_core::async_trait]
impl Harness for EmulatorHarness {
    fn name(&self) -> String {
        format!("eventhubs (emulator, {})", self.checkpoint_store)
    }

    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        common::backend(self.checkpoint_store).await
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
        checkpoint_store: "memory://conformance",
    }
}

evhub_conformance::conformance_tests!(harness());
