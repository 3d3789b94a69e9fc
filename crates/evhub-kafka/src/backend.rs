//! The `kafka` / `eventhubs-kafka` backend: builds producers, consumers and readers on a
//! shared [`Cluster`] connection; metadata and hub creation.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use evhub_core::config::{Config, EventHubsKafkaConfig, KafkaConfig};
use evhub_core::{
    Backend, Capabilities, Consumer, ConsumerOptions, Error, HubOptions, HubProperties,
    PartitionId, PartitionProperties, PartitionReader, Producer, ReaderOptions, Result,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use crate::cluster::Cluster;
use crate::config::{ClientKind, Settings};
use crate::consumer::KafkaConsumer;
use crate::context::EvhubContext;
use crate::error::map_kafka_error;
use crate::producer::KafkaProducer;
use crate::reader::KafkaReader;

/// A connection to a Kafka cluster (`kafka`) or an Event Hubs namespace through its Kafka
/// endpoint (`eventhubs-kafka`). Cheap to clone.
///
/// One librdkafka producer per backend serves every [`Producer`] and the metadata calls;
/// each consumer-group member and each partition reader has its own librdkafka consumer.
#[derive(Clone)]
pub struct KafkaBackend {
    cluster: Cluster,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("settings", self.cluster.settings())
            .finish_non_exhaustive()
    }
}

impl KafkaBackend {
    /// Connects to a Kafka cluster (`backend = "kafka"`) and checks that it answers within
    /// `request_timeout_ms`: an unreachable cluster fails with [`evhub_core::ErrorKind::Unavailable`],
    /// rejected credentials with [`evhub_core::ErrorKind::Auth`].
    pub async fn connect(config: &KafkaConfig) -> Result<Self> {
        Self::with_settings(Settings::from_kafka(config)?).await
    }

    /// Connects to Event Hubs through its Kafka endpoint (`backend = "eventhubs-kafka"`).
    pub async fn connect_event_hubs(config: &EventHubsKafkaConfig) -> Result<Self> {
        Self::with_settings(Settings::from_event_hubs(config, None)?).await
    }

    /// Like [`connect_event_hubs`](Self::connect_event_hubs), authenticating with OAUTHBEARER
    /// tokens from `credential` (any `azure_core` token credential) for
    /// `https://<namespace>/.default`.
    pub async fn connect_event_hubs_with_credential(
        config: &EventHubsKafkaConfig,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Result<Self> {
        Self::with_settings(Settings::from_event_hubs(config, Some(credential))?).await
    }

    /// Connects to the backend a [`Config`] names, if it is `kafka` or `eventhubs-kafka`.
    pub async fn from_config(config: &Config) -> Result<Self> {
        match config {
            Config::Kafka(c) => Self::connect(c).await,
            Config::EventHubsKafka(c) => Self::connect_event_hubs(c).await,
            other => Err(Error::config(format!(
                "evhub-kafka serves `kafka` and `eventhubs-kafka`, not `{}`",
                other.backend_id()
            ))),
        }
    }

    async fn with_settings(settings: Settings) -> Result<Self> {
        Ok(Self {
            cluster: Cluster::connect(settings).await?,
        })
    }

    /// The librdkafka settings this backend creates its clients with.
    pub fn settings(&self) -> &Settings {
        self.cluster.settings()
    }
}

#[async_trait]
impl Backend for KafkaBackend {
    fn id(&self) -> &'static str {
        self.cluster.id()
    }

    fn capabilities(&self) -> Capabilities {
        self.cluster.settings().capabilities.clone()
    }

    async fn producer(&self, hub: &str) -> Result<Arc<dyn Producer>> {
        evhub_core::group::validate_hub_name(hub)?;
        let partitions = self.cluster.partition_count(hub).await?;
        Ok(Arc::new(KafkaProducer::new(
            self.cluster.clone(),
            hub.to_owned(),
            partitions,
        )))
    }

    async fn consumer(&self, hub: &str, options: ConsumerOptions) -> Result<Arc<dyn Consumer>> {
        evhub_core::group::validate_hub_name(hub)?;
        if options.group.is_empty() {
            return Err(Error::invalid_input("consumer group name is empty"));
        }
        self.cluster.partition_count(hub).await?;
        Ok(Arc::new(
            KafkaConsumer::join(self.cluster.clone(), hub, options).await?,
        ))
    }

    async fn partition_reader(
        &self,
        hub: &str,
        options: ReaderOptions,
    ) -> Result<Arc<dyn PartitionReader>> {
        evhub_core::group::validate_hub_name(hub)?;
        let partitions = self.cluster.partition_count(hub).await?;
        if options.partition >= partitions {
            return Err(Error::not_found(format!(
                "hub `{hub}` has {partitions} partitions, no partition {}",
                options.partition
            )));
        }
        Ok(Arc::new(
            KafkaReader::open(self.cluster.clone(), hub, options).await?,
        ))
    }

    async fn hub_properties(&self, hub: &str) -> Result<HubProperties> {
        self.cluster.hub_properties(hub).await
    }

    async fn partition_properties(
        &self,
        hub: &str,
        partition: PartitionId,
    ) -> Result<PartitionProperties> {
        let count = self.cluster.partition_count(hub).await?;
        if partition >= count {
            return Err(Error::not_found(format!(
                "hub `{hub}` has {count} partitions, no partition {partition}"
            )));
        }
        let (low, high) = self.cluster.watermarks(hub, partition).await?;
        Ok(PartitionProperties {
            hub: hub.to_owned(),
            partition,
            begin_offset: low,
            end_offset: high,
            last_enqueued_at: None,
        })
    }

    async fn create_hub(&self, hub: &str, options: HubOptions) -> Result<()> {
        if !self.cluster.settings().capabilities.create_hub {
            return Err(Error::unsupported(
                self.id(),
                "creating hubs over the Kafka protocol",
            ));
        }
        evhub_core::group::validate_hub_name(hub)?;
        if options.partitions == 0 || options.partitions > i32::MAX as u32 {
            return Err(Error::invalid_input("a hub needs at least one partition"));
        }
        let settings = self.cluster.settings();
        let admin: AdminClient<EvhubContext> = settings
            .client_config(ClientKind::Admin)
            .create_with_context(EvhubContext::new(
                settings.backend_id,
                settings.token_source.clone(),
            ))
            .map_err(|e| map_kafka_error("creating admin client", e))?;
        let topic = NewTopic::new(hub, options.partitions as i32, TopicReplication::Fixed(-1));
        let admin_options = AdminOptions::new()
            .request_timeout(Some(settings.request_timeout))
            .operation_timeout(Some(settings.request_timeout));
        let started = Instant::now();
        let results = admin
            .create_topics([&topic], &admin_options)
            .await
            .map_err(|e| {
                self.cluster.explain(
                    map_kafka_error(&format!("creating hub `{hub}`"), e),
                    started.elapsed(),
                )
            })?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    let existing = self.cluster.partition_count(hub).await?;
                    if existing != options.partitions {
                        return Err(Error::invalid_input(format!(
                            "hub `{hub}` already exists with {existing} partitions"
                        )));
                    }
                    return Ok(());
                }
                Err((_, code)) => {
                    return Err(map_kafka_error(
                        &format!("creating hub `{hub}`"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        self.cluster.wait_until_ready(hub, options.partitions).await
    }
}
