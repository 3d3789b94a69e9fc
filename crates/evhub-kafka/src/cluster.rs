//! The connection shared by every client of one backend: settings, the librdkafka producer
//! (which also serves metadata requests) and the last client error. Producers, consumers and
//! readers depend on this module, never on `backend.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub_core::{Error, ErrorKind, HubProperties, PartitionId, Result};
use rdkafka::client::Client;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer as _, ThreadedProducer};
use rdkafka::util::Timeout;

use crate::config::{ClientKind, Settings};
use crate::context::{EvhubContext, LastError};
use crate::error::map_kafka_error;
use crate::util::blocking;

/// Cheap to clone; all clones share one librdkafka producer.
#[derive(Clone)]
pub(crate) struct Cluster(Arc<Inner>);

struct Inner {
    settings: Settings,
    producer: ThreadedProducer<EvhubContext>,
    last_error: LastError,
}

impl Cluster {
    /// Creates the shared producer and checks that the endpoint answers within
    /// `request_timeout` with our credentials.
    pub async fn connect(settings: Settings) -> Result<Self> {
        let context = EvhubContext::new(settings.backend_id, settings.token_source.clone());
        let last_error = context.last_error_handle();
        let producer: ThreadedProducer<EvhubContext> = settings
            .client_config(ClientKind::Producer)
            .create_with_context(context)
            .map_err(|e| {
                map_kafka_error(&format!("{}: creating producer", settings.backend_id), e)
            })?;
        let cluster = Self(Arc::new(Inner {
            settings,
            producer,
            last_error,
        }));
        cluster.check_connection().await?;
        Ok(cluster)
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn id(&self) -> &'static str {
        self.0.settings.backend_id
    }

    pub fn producer(&self) -> &ThreadedProducer<EvhubContext> {
        &self.0.producer
    }

    fn client(&self) -> &Client<EvhubContext> {
        self.0.producer.client()
    }

    /// Fetches cluster metadata once to prove the endpoint answers and accepts our credentials.
    async fn check_connection(&self) -> Result<()> {
        let this = self.clone();
        let timeout = self.settings().request_timeout;
        let started = Instant::now();
        let result =
            blocking(move || this.client().fetch_metadata(None, Timeout::After(timeout))).await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(self.explain(
                map_kafka_error(&format!("{}: connecting", self.id()), e),
                started.elapsed(),
            )),
        }
    }

    /// Replaces an opaque timeout or transport error by what the client saw meanwhile:
    /// a rejected login is `Auth`, an endpoint that never answered is `Unavailable`.
    pub fn explain(&self, err: Error, elapsed: Duration) -> Error {
        if !matches!(
            err.kind(),
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Other
        ) {
            return err;
        }
        let bootstrap = self
            .settings()
            .property(ClientKind::Admin, "bootstrap.servers")
            .unwrap_or_default();
        match self.0.last_error.get() {
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

    /// Topic metadata: the sorted partition ids; `NotFound` when the topic does not exist.
    pub async fn hub_properties(&self, hub: &str) -> Result<HubProperties> {
        evhub_core::group::validate_hub_name(hub)?;
        let this = self.clone();
        let topic = hub.to_owned();
        let timeout = self.settings().request_timeout;
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

    /// Partition count of `hub`; `NotFound` when the topic does not exist.
    pub async fn partition_count(&self, hub: &str) -> Result<u32> {
        Ok(self.hub_properties(hub).await?.partitions.len() as u32)
    }

    /// Low and high watermark (first offset, next offset) of one partition.
    pub async fn watermarks(&self, hub: &str, partition: PartitionId) -> Result<(i64, i64)> {
        let this = self.clone();
        let topic = hub.to_owned();
        let timeout = self.settings().request_timeout;
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
    pub async fn wait_until_ready(&self, hub: &str, partitions: u32) -> Result<()> {
        let deadline = Instant::now() + self.settings().request_timeout;
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
