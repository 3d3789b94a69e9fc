//! Pipeline cases on the `eventhubs` backend (AMQP) against the in-process emulator, and the
//! cross-backend case kafka -> eventhubs (skipped with a printed reason without a broker).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../evhub-eventhubs/tests/common/mod.rs"]
mod eh_common;
#[path = "../../evhub-kafka/tests/common/mod.rs"]
mod kafka_common;

use std::sync::Arc;
use std::time::Duration;

use evhub_conformance::Harness;
use evhub_core::{Backend, Result};

struct EmulatorHarness;

#[async_trait::async_trait]
impl Harness for EmulatorHarness {
    fn name(&self) -> String {
        "eventhubs (emulator)".into()
    }
    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        eh_common::backend("memory://pipeline").await
    }
    // Event Hubs creates hubs and groups through Azure Resource Manager; the emulator's
    // library API stands in for it.
    async fn create_hub(&self, name: &str, partitions: u32) -> Result<()> {
        eh_common::create_hub(name, partitions)
    }
    async fn create_group(&self, hub: &str, group: &str) -> Result<()> {
        eh_common::create_group(hub, group)
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn quiet_period(&self) -> Duration {
        Duration::from_millis(1000)
    }
}

macro_rules! emulator_cases {
    ($($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::$case(&EmulatorHarness, &EmulatorHarness).await;
            }
        )+
    };
}

emulator_cases!(
    mirror_keeps_every_event_in_order,
    failures_retry_bounded_and_dead_letter,
    checkpoint_never_passes_failed_event,
    shutdown_drains_and_restart_resumes
);

/// Cross-backend: a Kafka topic mirrored into an Event Hub (a migration), with the failure
/// cases' dead-letter hub on the Event Hubs side.
mod kafka_to_eventhubs {
    use super::*;

    fn kafka(test: &str) -> Option<kafka_common::KafkaHarness> {
        kafka_common::broker_or_skip(test).map(|b| kafka_common::KafkaHarness(Some(b)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mirror_keeps_every_event_in_order() {
        let Some(src) = kafka("kafka_to_eventhubs::mirror_keeps_every_event_in_order") else {
            return;
        };
        common::mirror_keeps_every_event_in_order(&src, &EmulatorHarness).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_retry_bounded_and_dead_letter() {
        let Some(src) = kafka("kafka_to_eventhubs::failures_retry_bounded_and_dead_letter") else {
            return;
        };
        common::failures_retry_bounded_and_dead_letter(&src, &EmulatorHarness).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoint_never_passes_failed_event() {
        let Some(src) = kafka("kafka_to_eventhubs::checkpoint_never_passes_failed_event") else {
            return;
        };
        common::checkpoint_never_passes_failed_event(&src, &EmulatorHarness).await;
    }
}
