//! Live runs against real cloud services, provisioned by `scripts/live-test.sh` from `infra/`:
//!
//! - `live_kafka`: the whole conformance suite against a managed Kafka cluster (SASL_SSL), whose
//!   API key may create topics and groups under the `evhub-` prefix the suite uses.
//! - `live_eventhubs_kafka`: Azure Event Hubs through its Kafka endpoint. That endpoint cannot
//!   create event hubs and the suite needs a fresh hub per case, so this runs round trips on the
//!   provisioned hub (every partition, keys, headers, consumer group commit) instead.
//!
//! Without the `EVHUB_LIVE_*` variables (see `infra/live-env.tsv`) every test prints which ones
//! are missing and how to get them, and returns.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub_conformance::Harness;
use evhub_core::config::{
    EventHubsConnectionString, EventHubsKafkaConfig, KafkaConfig, KafkaSaslMechanism,
    KafkaSecurityProtocol, Secret,
};
use evhub_core::{Backend, ConsumerOptions, Error, Event, InitialPosition, Result};
use evhub_kafka::KafkaBackend;
use evhub_live::{LiveConfig, Target};

fn mechanism(name: &str) -> Result<KafkaSaslMechanism> {
    match name.to_ascii_uppercase().as_str() {
        "PLAIN" => Ok(KafkaSaslMechanism::Plain),
        "SCRAM-SHA-256" => Ok(KafkaSaslMechanism::ScramSha256),
        "SCRAM-SHA-512" => Ok(KafkaSaslMechanism::ScramSha512),
        other => Err(Error::config(format!(
            "EVHUB_LIVE_KAFKA_SASL_MECHANISM: unsupported mechanism `{other}`"
        ))),
    }
}

fn kafka_config(live: &LiveConfig) -> Result<KafkaConfig> {
    let mut config = KafkaConfig::new(live.require("EVHUB_LIVE_KAFKA_BOOTSTRAP_SERVERS"));
    config.security_protocol = Some(KafkaSecurityProtocol::SaslSsl);
    config.sasl_mechanism = Some(mechanism(live.require("EVHUB_LIVE_KAFKA_SASL_MECHANISM"))?);
    config.username = Some(live.require("EVHUB_LIVE_KAFKA_SASL_USERNAME").to_owned());
    config.password = Some(Secret::new(live.require("EVHUB_LIVE_KAFKA_SASL_PASSWORD")));
    Ok(config)
}

fn event_hubs_kafka_config(live: &LiveConfig) -> Result<EventHubsKafkaConfig> {
    let cs: EventHubsConnectionString = live
        .require("EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING")
        .parse()?;
    Ok(EventHubsKafkaConfig::from_connection_string(cs))
}

/// The conformance suite against the managed Kafka cluster.
struct LiveKafka(std::result::Result<LiveConfig, String>);

#[async_trait::async_trait]
impl Harness for LiveKafka {
    fn name(&self) -> String {
        "kafka (live)".into()
    }

    fn skip_reason(&self) -> Option<String> {
        self.0.as_ref().err().cloned()
    }

    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        let live = self.0.as_ref().map_err(|e| Error::config(e.clone()))?;
        Ok(Arc::new(KafkaBackend::connect(&kafka_config(live)?).await?))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(90)
    }

    fn quiet_period(&self) -> Duration {
        Duration::from_secs(3)
    }
}

mod live_kafka {
    use super::*;

    evhub_conformance::conformance_tests!(LiveKafka(
        LiveConfig::from_env(Target::Kafka).map_err(|skip| skip.to_string())
    ));
}

/// Keyed events with headers reach every partition of the provisioned hub and come back through
/// a consumer group, which commits them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_eventhubs_kafka_round_trip() {
    let Some(live) = LiveConfig::from_env_or_skip(Target::EventHubsKafka) else {
        return;
    };
    let hub = live.require("EVHUB_LIVE_EVENTHUBS_HUB").to_owned();
    let partitions: u32 = live
        .require_parsed("EVHUB_LIVE_EVENTHUBS_PARTITIONS")
        .unwrap();
    let backend = KafkaBackend::connect_event_hubs(&event_hubs_kafka_config(&live).unwrap())
        .await
        .unwrap();
    let props = backend.hub_properties(&hub).await.unwrap();
    assert_eq!(props.partitions.len() as u32, partitions, "{props:?}");

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let run = format!("{:x}{nanos:x}", std::process::id());
    let group = format!("evhub-live-{run}");
    let consumer = backend
        .consumer(
            &hub,
            ConsumerOptions::new(&group).with_initial_position(InitialPosition::Latest),
        )
        .await
        .unwrap();
    let producer = backend.producer(&hub).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0u32;
    let mut seen = std::collections::BTreeSet::new();
    // Latest is resolved when the group gets its partitions: keep sending until every
    // partition delivered one of this run's events.
    while seen.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "saw partitions {seen:?} of {partitions}"
        );
        let events = (0..partitions)
            .map(|p| {
                Event::new(format!("{run}:{sent}:{p}"))
                    .with_partition(p)
                    .with_key(format!("key-{p}"))
                    .with_header("run", run.clone())
            })
            .collect();
        producer.send_batch(events).await.unwrap();
        sent += 1;
        while let Ok(event) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
            let event = event.unwrap();
            if event.header("run").map(|v| &v[..]) != Some(run.as_bytes()) {
                continue;
            }
            let key = format!("key-{}", event.partition);
            assert_eq!(event.key.as_deref(), Some(key.as_bytes()));
            assert!(
                String::from_utf8_lossy(&event.payload).ends_with(&format!(":{}", event.partition))
            );
            consumer.commit(&event.checkpoint()).await.unwrap();
            seen.insert(event.partition);
        }
    }
    consumer.close().await.unwrap();
    producer.close().await.unwrap();
}
