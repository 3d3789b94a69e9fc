//! The `kafka` / `eventhubs-kafka` backend: connection check, metadata, hub creation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use evhub_core::config::{Config, EventHubsKafkaConfig, KafkaConfig};
use evhub_core::{
    Backend, Capabilities, Consumer, ConsumerOptions, Error, ErrorKind, HubOptions, HubProperties,
    PartitionId, PartitionProperties, PartitionReader, Producer, ReaderOptions, Result,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::future_producer::FutureProducerContext;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::util::Timeout;

use crate::config::{ClientKind, Settings};
use crate::context::{EvhubContext, LastError};
use crate::error::map_kafka_error;

/// A connection to a Kafka cluster (`kafka`) or an Event Hubs namespace through its Kafka
/// endpoint (`eventhubs-kafka`). Cheap to clone.
///
/// One librdkafka producer per backend serves every [`Producer`] and the metadata calls;
/// each consumer-group member and each partition reader has its own librdkafka consumer.
#[derive(Clone)]
pub struct KafkaBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: Settings,
    pub producer: FutureProducer<EvhubContext>,
    pub last_error: LastError,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl KafkaBackend {
    /// Connects to a Kafka cluster (`backend = "kafka"`) and checks that it answers within
    /// `request_timeout_ms`: an unreachable cluster fails with [`ErrorKind::Unavailable`],
    /// rejected credentials with [`ErrorKind::Auth`].
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
        let context = EvhubContext::new(settings.backend_id, settings.token_source.clone());
        let last_error = context.last_error_handle();
        let producer: FutureProducer<EvhubContext> = settings
            .client_config(ClientKind::Producer)
            .create_with_context(context)
            .map_err(|e| {
                map_kafka_error(&format!("{}: creating producer", settings.backend_id), e)
            })?;
        let backend = Self {
            inner: Arc::new(Inner {
                settings,
                producer,
                last_error,
            }),
        };
        backend.check_connection().await?;
        Ok(backend)
    }

    /// Fetches cluster metadata once to prove the endpoint answers and accepts our credentials.
    async fn check_connection(&self) -> Result<()> {
        let inner = self.inner.clone();
        let timeout = inner.settings.request_timeout;
        let started = Instant::now();
        let result = blocking(move || {
            inner
                .producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|_| ())
        })
        .await?;
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.explain(
                map_kafka_error(&format!("{}: connecting", self.id()), e),
                started.elapsed(),
            )),
        }
    }

    /// Replaces an opaque timeout or transport error by what the client saw meanwhile:
    /// a rejected login is `Auth`, an endpoint that never answered is `Unavailable`.
    pub(crate) fn explain(&self, err: Error, elapsed: Duration) -> Error {
        if !matches!(
            err.kind(),
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Other
        ) {
            return err;
        }
        let bootstrap = self
            .inner
            .settings
            .property(ClientKind::Admin, "bootstrap.servers")
            .unwrap_or_default();
        match self.inner.last_error.get() {
            Some((ErrorKind::Auth, reason)) => Error::new(
                ErrorKind::Auth,
                format!(
                    "{}: authentication with {bootstrap} failed: {reason}",
                    self.id()
                ),
            )
            .with_source(err),
            last => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: no broker at {bootstrap} answered within {elapsed:.1?}{}",
                    self.id(),
                    last.map(|(_, r)| format!(" (last error: {r})"))
                        .unwrap_or_default()
                ),
            )
            .with_source(err),
        }
    }

    pub(crate) fn client(&self) -> &Client<FutureProducerContext<EvhubContext>> {
        self.inner.producer.client()
    }

    /// Partition count of `hub`; `NotFound` when the topic does not exist.
    pub(crate) async fn partition_count(&self, hub: &str) -> Result<u32> {
        Ok(self.hub_properties(hub).await?.partitions.len() as u32)
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }
}

/// Runs a blocking librdkafka call off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("blocking task failed: {e}")))
}

#[async_trait]
impl Backend for KafkaBackend {
    fn id(&self) -> &'static str {
        self.inner.settings.backend_id
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.settings.capabilities.clone()
    }

    async fn producer(&self, hub: &str) -> Result<Arc<dyn Producer>> {
        evhub_core::group::validate_hub_name(hub)?;
        let partitions = self.partition_count(hub).await?;
        Ok(Arc::new(crate::producer::KafkaProducer::new(
            self.clone(),
            hub.to_owned(),
            partitions,
        )))
    }

    async fn consumer(&self, hub: &str, options: ConsumerOptions) -> Result<Arc<dyn Consumer>> {
        evhub_core::group::validate_hub_name(hub)?;
        if options.group.is_empty() {
            return Err(Error::invalid_input("consumer group name is empty"));
        }
        self.partition_count(hub).await?;
        Ok(Arc::new(
            crate::consumer::KafkaConsumer::join(self.clone(), hub.to_owned(), options).await?,
        ))
    }

    async fn partition_reader(
        &self,
        hub: &str,
        options: ReaderOptions,
    ) -> Result<Arc<dyn PartitionReader>> {
        evhub_core::group::validate_hub_name(hub)?;
        let partitions = self.partition_count(hub).await?;
        if options.partition >= partitions {
            return Err(Error::not_found(format!(
                "hub `{hub}` has {partitions} partitions, no partition {}",
                options.partition
            )));
        }
        Ok(Arc::new(
            crate::reader::KafkaReader::open(self.clone(), hub.to_owned(), options).await?,
        ))
    }

    async fn hub_properties(&self, hub: &str) -> Result<HubProperties> {
        evhub_core::group::validate_hub_name(hub)?;
        let this = self.clone();
        let topic = hub.to_owned();
        let timeout = self.inner.settings.request_timeout;
        let started = Instant::now();
        let metadata = blocking(move || {
            this.client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
        })
        .await?
        .map_err(|e| {
            self.explain(
                map_kafka_error(&format!("metadata of hub `{hub}`"), e),
                started.elapsed(),
            )
        })?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == hub) else {
            return Err(Error::not_found(format!("hub `{hub}` does not exist")));
        };
        if let Some(err) = topic.error() {
            let code = RDKafkaErrorCode::from(err);
            return Err(match code {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    Error::not_found(format!("hub `{hub}` does not exist"))
                }
                other => map_kafka_error(
                    &format!("metadata of hub `{hub}`"),
                    rdkafka::error::KafkaError::MetadataFetch(other),
                ),
            });
        }
        let mut partitions: Vec<PartitionId> = topic
            .partitions()
            .iter()
            .filter_map(|p| PartitionId::try_from(p.id()).ok())
            .collect();
        if partitions.is_empty() {
            return Err(Error::not_found(format!("hub `{hub}` does not exist")));
        }
        partitions.sort_unstable();
        Ok(HubProperties {
            name: hub.to_owned(),
            partitions,
            created_at: None,
        })
    }

    async fn partition_properties(
        &self,
        hub: &str,
        partition: PartitionId,
    ) -> Result<PartitionProperties> {
        let count = self.partition_count(hub).await?;
        if partition >= count {
            return Err(Error::not_found(format!(
                "hub `{hub}` has {count} partitions, no partition {partition}"
            )));
        }
        let (low, high) = self.watermarks(hub, partition).await?;
        Ok(PartitionProperties {
            hub: hub.to_owned(),
            partition,
            begin_offset: low,
            end_offset: high,
            last_enqueued_at: None,
        })
    }

    async fn create_hub(&self, hub: &str, options: HubOptions) -> Result<()> {
        if !self.inner.settings.capabilities.create_hub {
            return Err(Error::unsupported(
                self.id(),
                "creating hubs over the Kafka protocol",
            ));
        }
        evhub_core::group::validate_hub_name(hub)?;
        if options.partitions == 0 || options.partitions > i32::MAX as u32 {
            return Err(Error::invalid_input("a hub needs at least one partition"));
        }
        let settings = &self.inner.settings;
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
                self.explain(
                    map_kafka_error(&format!("creating hub `{hub}`"), e),
                    started.elapsed(),
                )
            })?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    let existing = self.partition_count(hub).await?;
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
        self.wait_until_ready(hub, options.partitions).await
    }
}

impl KafkaBackend {
    /// Low and high watermark (first offset, next offset) of one partition.
    pub(crate) async fn watermarks(&self, hub: &str, partition: PartitionId) -> Result<(i64, i64)> {
        let this = self.clone();
        let topic = hub.to_owned();
        let timeout = self.inner.settings.request_timeout;
        let started = Instant::now();
        blocking(move || {
            this.client()
                .fetch_watermarks(&topic, partition as i32, Timeout::After(timeout))
        })
        .await?
        .map_err(|e| {
            self.explain(
                map_kafka_error(&format!("offsets of hub `{hub}` partition {partition}"), e),
                started.elapsed(),
            )
        })
    }

    /// Waits until every partition of a new topic has a leader, so the first send does not
    /// race the controller.
    async fn wait_until_ready(&self, hub: &str, partitions: u32) -> Result<()> {
        let deadline = Instant::now() + self.inner.settings.request_timeout;
        loop {
            let this = self.clone();
            let topic = hub.to_owned();
            let ready = blocking(move || {
                this.client()
                    .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(5)))
                    .ok()
                    .and_then(|m| {
                        m.topics().iter().find(|t| t.name() == topic).map(|t| {
                            t.error().is_none()
                                && t.partitions().len() == partitions as usize
                                && t.partitions()
                                    .iter()
                                    .all(|p| p.leader() >= 0 && p.error().is_none())
                        })
                    })
                    .unwrap_or(false)
            })
            .await?;
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::timeout(format!(
                    "hub `{hub}` was created but its partitions got no leader"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
