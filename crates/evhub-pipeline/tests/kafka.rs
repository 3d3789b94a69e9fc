//! Pipeline cases on `kafka` and `eventhubs-kafka` against the local Apache Kafka broker
//! (`eval "$(scripts/kafka.sh env)"`); each test prints why it skipped without one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../evhub-kafka/tests/common/mod.rs"]
mod kafka_common;

use evhub_conformance::Harness;
use kafka_common::{broker_or_skip, EventHubsKafkaHarness, KafkaHarness};

fn kafka(test: &str) -> Option<KafkaHarness> {
    broker_or_skip(test).map(|b| KafkaHarness(Some(b)))
}

fn eventhubs_kafka(test: &str) -> Option<EventHubsKafkaHarness> {
    let h = EventHubsKafkaHarness(Some(broker_or_skip(test)?));
    match h.skip_reason() {
        Some(reason) => {
            eprintln!("{test}: {reason}");
            None
        }
        None => Some(h),
    }
}

macro_rules! pipeline_cases {
    ($harness:ident: $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let name = concat!(stringify!($harness), "::", stringify!($case));
                let Some(h) = $harness(name) else { return };
                common::$case(&h, &h).await;
            }
        )+
    };
}

mod on_kafka {
    use super::*;
    pipeline_cases!(kafka: mirror_keeps_every_event_in_order, failures_retry_bounded_and_dead_letter,
        checkpoint_never_passes_failed_event, shutdown_drains_and_restart_resumes);
}

mod on_eventhubs_kafka {
    use super::*;
    pipeline_cases!(eventhubs_kafka: mirror_keeps_every_event_in_order,
        failures_retry_bounded_and_dead_letter, checkpoint_never_passes_failed_event,
        shutdown_drains_and_restart_resumes);
}
