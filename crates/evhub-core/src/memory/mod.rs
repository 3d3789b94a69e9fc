//! The embedded in-memory backend (`memory`): real hub semantics inside one process.
//!
//! Hubs have partitions with offsets and enqueue times; keys map to partitions with Kafka's
//! murmur2 hash; consumer groups assign partitions to members and rebalance when members join
//! or leave; checkpoints are kept per group; uncommitted events are delivered again to the next
//! owner; every group receives every event. Partitions hold at most `partition_capacity` events:
//! with the default `block` overflow policy producers wait until every consumer group has
//! committed past the oldest event, so a slow consumer slows producers down instead of growing
//! memory without bound.
//!
//! ```
//! use evhub_core::{memory::MemoryBackend, Backend, ConsumerOptions, Event, HubOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub_core::Result<()> {
//! let hub = MemoryBackend::new(Default::default());
//! hub.create_hub("orders", HubOptions::with_partitions(4)).await?;
//! let producer = hub.producer("orders").await?;
//! producer.send(Event::new("order #1").with_key("customer-7")).await?;
//!
//! let consumer = hub.consumer("orders", ConsumerOptions::new("billing")).await?;
//! let event = consumer.recv().await?;
//! assert_eq!(&event.payload[..], b"order #1");
//! consumer.commit(&event.checkpoint()).await?;
//! # Ok(()) }
//! ```

mod consumer;
mod group;
mod hub;
mod partitioner;
mod producer;

pub use partitioner::{murmur2, partition_for_key};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::Backend;
use crate::capabilities::Capabilities;
use crate::config::MemoryConfig;
use crate::consumer::{Consumer, ConsumerOptions, PartitionReader, ReaderOptions};
use crate::error::{Error, Result};
use crate::event::PartitionId;
use crate::metadata::{HubOptions, HubProperties, PartitionProperties};
use crate::producer::Producer;

use hub::{lock, HubState, Limits};

/// The embedded memory backend. Cloning shares the same hubs.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: MemoryConfig,
    hubs: Mutex<HashMap<String, Arc<HubState>>>,
}

impl MemoryBackend {
    /// A backend with `config`. Hubs listed in `config.hubs` are created now; invalid entries are
    /// reported by [`MemoryBackend::try_new`].
    pub fn new(config: MemoryConfig) -> Self {
        let backend = Self {
            shared: Arc::new(Shared {
                config,
                hubs: Mutex::new(HashMap::new()),
            }),
        };
        for spec in backend.shared.config.hubs.clone() {
            // Invalid names are reported by try_new; new() keeps the infallible signature.
            let _ = backend.create_sync(&spec.name, spec.partitions);
        }
        backend
    }

    /// Like [`MemoryBackend::new`], but fails on invalid configuration.
    pub fn try_new(config: MemoryConfig) -> Result<Self> {
        if config.default_partitions == 0 {
            return Err(Error::config(
                "memory: `default_partitions` must be at least 1",
            ));
        }
        if config.partition_capacity == 0 {
            return Err(Error::config(
                "memory: `partition_capacity` must be at least 1",
            ));
        }
        if config.max_event_bytes == 0 {
            return Err(Error::config(
                "memory: `max_event_bytes` must be at least 1",
            ));
        }
        let specs = config.hubs.clone();
        let backend = Self::new(MemoryConfig {
            hubs: Vec::new(),
            ..config
        });
        for spec in specs {
            backend
                .create_sync(&spec.name, spec.partitions)
                .map_err(|e| {
                    Error::config(format!("memory: hub `{}`: {}", spec.name, e.message()))
                })?;
        }
        Ok(backend)
    }

    /// The configuration this backend was built with.
    pub fn config(&self) -> &MemoryConfig {
        &self.shared.config
    }

    fn limits(&self) -> Limits {
        Limits {
            capacity: self.shared.config.partition_capacity.max(1),
            overflow: self.shared.config.overflow,
            send_timeout: Duration::from_millis(self.shared.config.send_timeout_ms),
        }
    }

    fn create_sync(&self, name: &str, partitions: Option<u32>) -> Result<Arc<HubState>> {
        crate::group::validate_hub_name(name)?;
        let partitions = partitions.unwrap_or(self.shared.config.default_partitions);
        if partitions == 0 {
            return Err(Error::invalid_input("a hub needs at least one partition"));
        }
        let mut hubs = lock(&self.shared.hubs);
        if let Some(existing) = hubs.get(name) {
            if existing.partition_count() != partitions {
                return Err(Error::invalid_input(format!(
                    "hub `{name}` already exists with {} partitions",
                    existing.partition_count()
                )));
            }
            return Ok(existing.clone());
        }
        let hub = Arc::new(HubState::new(name.into(), partitions, self.limits()));
        hubs.insert(name.to_owned(), hub.clone());
        Ok(hub)
    }

    fn hub(&self, name: &str) -> Result<Arc<HubState>> {
        if let Some(hub) = lock(&self.shared.hubs).get(name) {
            return Ok(hub.clone());
        }
        if self.shared.config.auto_create_hubs {
            return self.create_sync(name, None);
        }
        Err(Error::not_found(format!("hub `{name}` does not exist")))
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn id(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal(self.shared.config.max_event_bytes)
            .with_create_hub(true)
            .with_partition_reader(true)
            .with_seek_by_time(true)
            .with_headers(true)
            .with_binary_keys(true)
            .with_explicit_partition(true)
            .with_idempotence(true)
    }

    async fn producer(&self, hub: &str) -> Result<Arc<dyn Producer>> {
        let hub = self.hub(hub)?;
        Ok(Arc::new(producer::MemoryProducer::new(
            hub,
            self.shared.config.max_event_bytes,
        )))
    }

    async fn consumer(&self, hub: &str, options: ConsumerOptions) -> Result<Arc<dyn Consumer>> {
        if options.group.is_empty() {
            return Err(Error::invalid_input("consumer group name is empty"));
        }
        let hub = self.hub(hub)?;
        let initial = options
            .initial_position
            .unwrap_or(self.shared.config.initial_position);
        Ok(Arc::new(consumer::MemoryConsumer::join(
            hub,
            options.group,
            initial,
        )))
    }

    async fn partition_reader(
        &self,
        hub: &str,
        options: ReaderOptions,
    ) -> Result<Arc<dyn PartitionReader>> {
        let hub = self.hub(hub)?;
        Ok(Arc::new(consumer::MemoryReader::new(
            hub,
            options.partition,
            &options.start,
        )?))
    }

    async fn hub_properties(&self, hub: &str) -> Result<HubProperties> {
        let hub = self.hub(hub)?;
        Ok(HubProperties {
            name: hub.name.to_string(),
            partitions: (0..hub.partition_count()).collect(),
            created_at: Some(hub.created_at),
        })
    }

    async fn partition_properties(
        &self,
        hub: &str,
        partition: PartitionId,
    ) -> Result<PartitionProperties> {
        self.hub(hub)?.properties(partition)
    }

    async fn create_hub(&self, hub: &str, options: HubOptions) -> Result<()> {
        self.create_sync(hub, Some(options.partitions)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverflowPolicy;
    use crate::{ErrorKind, Event};

    fn small(overflow: OverflowPolicy) -> MemoryBackend {
        MemoryBackend::new(MemoryConfig {
            partition_capacity: 10,
            overflow,
            send_timeout_ms: 200,
            ..MemoryConfig::default()
        })
    }

    #[tokio::test]
    async fn slow_group_blocks_producers_until_it_commits() {
        let backend = small(OverflowPolicy::Block);
        backend
            .create_hub("h", HubOptions::with_partitions(1))
            .await
            .unwrap();
        let consumer = backend
            .consumer("h", ConsumerOptions::new("slow"))
            .await
            .unwrap();
        let producer = backend.producer("h").await.unwrap();
        let events = (0..10).map(|i| Event::new(format!("{i}"))).collect();
        producer.send_batch(events).await.unwrap();
        // Full, and the group has not committed anything: the send waits, then times out.
        let err = producer.send(Event::new("overflow")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.is_retriable());
        // A commit frees room; a waiting send completes as soon as it happens.
        let first = consumer.recv().await.unwrap();
        let waiting = tokio::spawn({
            let producer = producer.clone();
            async move { producer.send(Event::new("after-commit")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        consumer.commit(&first.checkpoint()).await.unwrap();
        let delivery = waiting.await.unwrap().unwrap();
        assert_eq!(delivery.offset, Some(10));
        let props = backend.partition_properties("h", 0).await.unwrap();
        assert_eq!((props.begin_offset, props.end_offset), (1, 11));
    }

    #[tokio::test]
    async fn drop_oldest_keeps_memory_bounded() {
        let backend = small(OverflowPolicy::DropOldest);
        backend
            .create_hub("h", HubOptions::with_partitions(1))
            .await
            .unwrap();
        let _idle = backend
            .consumer("h", ConsumerOptions::new("idle"))
            .await
            .unwrap();
        let producer = backend.producer("h").await.unwrap();
        for i in 0..25 {
            producer.send(Event::new(format!("{i}"))).await.unwrap();
        }
        let props = backend.partition_properties("h", 0).await.unwrap();
        assert_eq!(props.len(), 10);
        assert_eq!(props.begin_offset, 15);
    }

    #[tokio::test]
    async fn dropped_member_hands_its_partitions_over() {
        let backend = MemoryBackend::default();
        backend
            .create_hub("h", HubOptions::with_partitions(2))
            .await
            .unwrap();
        let a = backend
            .consumer("h", ConsumerOptions::new("g"))
            .await
            .unwrap();
        let b = backend
            .consumer("h", ConsumerOptions::new("g"))
            .await
            .unwrap();
        assert_eq!(a.assignment().await.unwrap().len(), 1);
        drop(b);
        assert_eq!(a.assignment().await.unwrap(), vec![0, 1]);
    }

    #[tokio::test]
    async fn invalid_names_and_partitions_are_rejected() {
        let backend = MemoryBackend::default();
        let err = backend
            .create_hub("no spaces", HubOptions::with_partitions(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        backend
            .create_hub("h", HubOptions::with_partitions(2))
            .await
            .unwrap();
        let err = backend
            .create_hub("h", HubOptions::with_partitions(3))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already exists with 2"), "{err}");
        let producer = backend.producer("h").await.unwrap();
        let err = producer
            .send(Event::new("x").with_partition(2))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let consumer = backend
            .consumer("h", ConsumerOptions::new("g"))
            .await
            .unwrap();
        let cp = crate::Checkpoint {
            hub: "h".into(),
            partition: 0,
            offset: 5,
            service_offset: None,
        };
        let err = consumer.commit(&cp).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "commit beyond the end: {err}"
        );
    }

    #[tokio::test]
    async fn stale_member_cannot_commit_a_revoked_partition() {
        let backend = MemoryBackend::default();
        backend
            .create_hub("h", HubOptions::with_partitions(2))
            .await
            .unwrap();
        backend
            .producer("h")
            .await
            .unwrap()
            .send(Event::new("x").with_partition(1))
            .await
            .unwrap();
        let a = backend
            .consumer("h", ConsumerOptions::new("g"))
            .await
            .unwrap();
        let event = a.recv().await.unwrap();
        assert_eq!(event.partition, 1);
        let _b = backend
            .consumer("h", ConsumerOptions::new("g"))
            .await
            .unwrap();
        let skipped = crate::group::commits_skipped();
        let outcome = a.commit(&event.checkpoint()).await.unwrap();
        assert_eq!(outcome, crate::CommitOutcome::NotOwned);
        assert!(crate::group::commits_skipped() > skipped);
    }
}
