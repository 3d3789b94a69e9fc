//! Configuration: one model, tagged by `backend`, loaded from TOML, JSON, environment or a URL.
//!
//! ```
//! use evhub_core::config::Config;
//! let config = Config::from_toml_str(r#"
//!     backend = "kafka"
//!     bootstrap_servers = "127.0.0.1:9092"
//!     initial_position = "latest"
//! "#)?;
//! assert_eq!(config.backend_id(), "kafka");
//!
//! let err = Config::from_toml_str("backend = \"memory\"\npartitons = 3").unwrap_err();
//! assert!(err.to_string().contains("partitons"));
//!
//! let from_url = Config::from_url("memory://?default_partitions=8&auto_create_hubs=true")?;
//! assert_eq!(from_url.backend_id(), "memory");
//! # Ok::<(), evhub_core::Error>(())
//! ```
//!
//! Unknown keys are rejected with their name. Secrets (passwords, keys, connection strings) are
//! [`Secret`]s or [`EventHubsConnectionString`]s and never appear in `Debug` output or errors.

mod backends;
mod connection_string;
mod secret;
mod sources;

pub use backends::{
    AzureCredentialKind, EventHubsConfig, EventHubsKafkaConfig, HubSpec, KafkaConfig,
    KafkaSaslMechanism, KafkaSecurityProtocol, LoadBalancingStrategy, MemoryConfig, OverflowPolicy,
};
pub use connection_string::{generate_sas_token, sas_signature, EventHubsConnectionString};
pub use secret::{is_secret_key, Secret};

use serde::Deserialize;

use crate::position::InitialPosition;

/// Configuration of one backend connection. The `backend` key selects the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend")]
pub enum Config {
    /// `backend = "memory"`: the embedded in-process hub.
    #[serde(rename = "memory")]
    Memory(MemoryConfig),
    /// `backend = "kafka"`: any Kafka-protocol cluster.
    #[serde(rename = "kafka")]
    Kafka(KafkaConfig),
    /// `backend = "eventhubs-kafka"`: Azure Event Hubs through its Kafka endpoint.
    #[serde(rename = "eventhubs-kafka")]
    EventHubsKafka(EventHubsKafkaConfig),
    /// `backend = "eventhubs"`: Azure Event Hubs over AMQP (native SDK).
    #[serde(rename = "eventhubs")]
    EventHubs(EventHubsConfig),
}

impl Default for Config {
    fn default() -> Self {
        Config::Memory(MemoryConfig::default())
    }
}

impl Config {
    /// The backend id: `memory`, `kafka`, `eventhubs-kafka` or `eventhubs`.
    pub fn backend_id(&self) -> &'static str {
        match self {
            Config::Memory(_) => "memory",
            Config::Kafka(_) => "kafka",
            Config::EventHubsKafka(_) => "eventhubs-kafka",
            Config::EventHubs(_) => "eventhubs",
        }
    }

    /// The default hub named in the configuration (`hub` key, URL path, `EntityPath`), used by
    /// tools and examples.
    pub fn hub(&self) -> Option<&str> {
        match self {
            Config::Memory(c) => c.hub.as_deref(),
            Config::Kafka(c) => c.hub.as_deref(),
            Config::EventHubsKafka(c) => c.hub.as_deref().or_else(|| {
                c.connection_string
                    .as_ref()
                    .and_then(EventHubsConnectionString::entity_path)
            }),
            Config::EventHubs(c) => c.hub.as_deref().or_else(|| {
                c.connection_string
                    .as_ref()
                    .and_then(EventHubsConnectionString::entity_path)
            }),
        }
    }

    /// Where consumer groups without a checkpoint start.
    pub fn initial_position(&self) -> InitialPosition {
        match self {
            Config::Memory(c) => c.initial_position,
            Config::Kafka(c) => c.initial_position,
            Config::EventHubsKafka(c) => c.initial_position,
            Config::EventHubs(c) => c.initial_position,
        }
    }
}
