//! Shared test set-up: the broker started by `scripts/kafka.sh` (through `scripts/test.sh`),
//! found through `EVHUB_TEST_*` variables.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evhub_conformance::Harness;
use evhub_core::config::{EventHubsConnectionString, EventHubsKafkaConfig, KafkaConfig};
use evhub_core::{Backend, HubOptions, Result};
use evhub_kafka::KafkaBackend;

/// What a test says when no broker is configured.
pub const SKIP: &str =
    "skipped: no Kafka broker; run scripts/test.sh (EVHUB_TEST_KAFKA_BOOTSTRAP unset)";

/// The local broker's endpoints, from `scripts/kafka.sh env`.
#[derive(Clone, Debug)]
pub struct Broker {
    pub plaintext: String,
    pub sasl_ssl: Option<String>,
    pub connection_string: Option<String>,
    pub ca_pem: Option<PathBuf>,
    pub oauth: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Broker {
    pub fn from_env() -> Option<Self> {
        Some(Self {
            plaintext: var("EVHUB_TEST_KAFKA_BOOTSTRAP")?,
            sasl_ssl: var("EVHUB_TEST_EHKAFKA_BOOTSTRAP"),
            connection_string: var("EVHUB_TEST_EHKAFKA_CONNECTION_STRING"),
            ca_pem: var("EVHUB_TEST_KAFKA_CA_PEM").map(PathBuf::from),
            oauth: var("EVHUB_TEST_KAFKA_OAUTH_BOOTSTRAP"),
        })
    }

    pub fn kafka_config(&self) -> KafkaConfig {
        let mut c = KafkaConfig::new(self.plaintext.clone());
        c.request_timeout_ms = 20_000;
        c.session_timeout_ms = Some(6_000);
        c
    }

    /// `eventhubs-kafka` config from the test connection string, trusting the test CA.
    pub fn event_hubs_config(&self) -> Option<EventHubsKafkaConfig> {
        let cs: EventHubsConnectionString = self.connection_string.as_deref()?.parse().ok()?;
        let mut c = EventHubsKafkaConfig::from_connection_string(cs);
        c.ssl_ca_location = self.ca_pem.clone();
        c.request_timeout_ms = 20_000;
        c.session_timeout_ms = 6_000;
        Some(c)
    }

    /// An admin connection over PLAINTEXT (the Event Hubs profile cannot create topics).
    pub async fn admin(&self) -> Result<KafkaBackend> {
        KafkaBackend::connect(&self.kafka_config()).await
    }
}

/// Prints the skip line and returns `None` when no broker is configured.
pub fn broker_or_skip(test: &str) -> Option<Broker> {
    let broker = Broker::from_env();
    if broker.is_none() {
        eprintln!("{test}: {SKIP}");
    }
    broker
}

/// `kafka` over PLAINTEXT.
pub struct KafkaHarness(pub Option<Broker>);

#[async_trait]
impl Harness for KafkaHarness {
    fn name(&self) -> String {
        "kafka".into()
    }
    fn skip_reason(&self) -> Option<String> {
        self.0.is_none().then(|| SKIP.to_owned())
    }
    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        let broker = self
            .0
            .as_ref()
            .ok_or_else(|| evhub_core::Error::config(SKIP))?;
        Ok(Arc::new(
            KafkaBackend::connect(&broker.kafka_config()).await?,
        ))
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn quiet_period(&self) -> Duration {
        Duration::from_millis(1000)
    }
}

/// `eventhubs-kafka` over SASL_SSL PLAIN with a connection string; hubs made over PLAINTEXT.
pub struct EventHubsKafkaHarness(pub Option<Broker>);

#[async_trait]
impl Harness for EventHubsKafkaHarness {
    fn name(&self) -> String {
        "eventhubs-kafka".into()
    }
    fn skip_reason(&self) -> Option<String> {
        match &self.0 {
            None => Some(SKIP.to_owned()),
            Some(b) if b.event_hubs_config().is_none() => Some(
                "skipped: EVHUB_TEST_EHKAFKA_CONNECTION_STRING unset or invalid; run scripts/test.sh"
                    .to_owned(),
            ),
            Some(_) => None,
        }
    }
    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        let config = self
            .0
            .as_ref()
            .and_then(Broker::event_hubs_config)
            .ok_or_else(|| evhub_core::Error::config(SKIP))?;
        Ok(Arc::new(KafkaBackend::connect_event_hubs(&config).await?))
    }
    async fn create_hub(&self, name: &str, partitions: u32) -> Result<()> {
        let broker = self
            .0
            .as_ref()
            .ok_or_else(|| evhub_core::Error::config(SKIP))?;
        broker
            .admin()
            .await?
            .create_hub(name, HubOptions::with_partitions(partitions))
            .await
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn quiet_period(&self) -> Duration {
        Duration::from_millis(1000)
    }
}
