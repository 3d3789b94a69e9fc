//! evhub: one producer/consumer API over event hubs, with the transport chosen by configuration.
//!
//! | backend id        | transport                                  | cargo feature |
//! |-------------------|--------------------------------------------|---------------|
//! | `memory`          | in-process hub (tests, demos, pipelines)   | `memory` (default) |
//! | `kafka`           | any Kafka-protocol cluster                 | `kafka`       |
//! | `eventhubs-kafka` | Azure Event Hubs through its Kafka endpoint | `kafka`       |
//! | `eventhubs`       | Azure Event Hubs over AMQP                 | `eventhubs`   |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub::Result<()> {
//! use evhub::{ConsumerOptions, Event, Hub, HubOptions};
//!
//! // Same code on every backend: only the URL (or config file / EVHUB_* env) changes.
//! let hub = Hub::from_url("memory://").await?;
//! hub.create_hub("orders", HubOptions::with_partitions(4)).await?;
//!
//! let producer = hub.producer("orders").await?;
//! producer.send(Event::new(r#"{"id":1}"#).with_key("customer-7")).await?;
//!
//! let consumer = hub.consumer("orders", ConsumerOptions::new("billing")).await?;
//! let event = consumer.recv().await?;
//! println!("{} from partition {}", String::from_utf8_lossy(&event.payload), event.partition);
//! consumer.commit(&event.checkpoint()).await?;
//! # Ok(()) }
//! ```

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

pub use evhub_core::*;

/// Data-integration pipelines: source consumer group -> handler -> sinks on any backend,
/// at-least-once, with retries, dead-letter hubs, graceful shutdown, counters and lag
/// (the `evhub-pipeline` crate).
pub use evhub_pipeline as pipeline;

/// A connection to the configured backend. Dereferences to [`Backend`], so
/// `hub.producer(..)`, `hub.consumer(..)` etc. work directly; [`Hub::backend`] gives the
/// shareable `Arc<dyn Backend>`.
#[derive(Debug, Clone)]
pub struct Hub {
    backend: Arc<dyn Backend>,
    default_hub: Option<String>,
}

impl Hub {
    /// Connects to the backend `config` describes.
    pub async fn connect(config: &Config) -> Result<Self> {
        Ok(Self {
            backend: connect(config).await?,
            default_hub: config.hub().map(str::to_owned),
        })
    }

    /// Connects using a config URL (`memory://`, `kafka://host:9092`, ...).
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::connect(&Config::from_url(url)?).await
    }

    /// Connects using `EVHUB_CONFIG`, `EVHUB_URL` or `EVHUB_BACKEND` + `EVHUB_<BACKEND>_*`.
    pub async fn from_env() -> Result<Self> {
        Self::connect(&Config::from_env()?).await
    }

    /// Connects using a TOML or JSON config file.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect(&Config::from_file(path)?).await
    }

    /// The backend, to share across tasks.
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The hub named in the configuration, if any.
    pub fn default_hub(&self) -> Option<&str> {
        self.default_hub.as_deref()
    }
}

impl Deref for Hub {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

/// Connects to the backend `config` describes and returns it behind the [`Backend`] trait.
///
/// Fails with [`ErrorKind::Config`] when the backend's cargo feature is not enabled.
pub async fn connect(config: &Config) -> Result<Arc<dyn Backend>> {
    match config {
        Config::Memory(c) => Ok(Arc::new(memory::MemoryBackend::try_new(c.clone())?)),
        #[cfg(feature = "kafka")]
        Config::Kafka(c) => Ok(Arc::new(evhub_kafka::KafkaBackend::connect(c).await?)),
        #[cfg(feature = "kafka")]
        Config::EventHubsKafka(c) => Ok(Arc::new(
            evhub_kafka::KafkaBackend::connect_event_hubs(c).await?,
        )),
        #[cfg(feature = "eventhubs")]
        Config::EventHubs(c) => Ok(Arc::new(
            evhub_eventhubs::EventHubsBackend::connect(c).await?,
        )),
        #[allow(unreachable_patterns)]
        other => Err(Error::config(format!(
            "backend `{}` is not compiled in: enable the `{}` feature of the evhub crate",
            other.backend_id(),
            feature_for(other.backend_id())
        ))),
    }
}

fn feature_for(backend: &str) -> &'static str {
    match backend {
        "eventhubs" => "eventhubs",
        "kafka" | "eventhubs-kafka" => "kafka",
        _ => "memory",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "eventhubs"))]
    #[tokio::test]
    async fn missing_backend_feature_is_a_config_error() {
        let config =
            Config::from_url("eventhubs://ns.servicebus.windows.net/x?credential=default").unwrap();
        let err = connect(&config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`eventhubs` feature"), "{err}");
    }

    #[tokio::test]
    async fn invalid_memory_config_is_rejected() {
        let err = Hub::from_url("memory://?default_partitions=0")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = Hub::from_url("memory://?hubs=bad%20name")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad name"), "{err}");
    }
}
