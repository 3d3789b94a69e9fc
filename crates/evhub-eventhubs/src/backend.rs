//! [`EventHubsBackend`]: the `eventhubs` backend behind [`evhub_core::Backend`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use azure_messaging_eventhubs::CheckpointStore;
use evhub_core::config::EventHubsConfig;
use evhub_core::{
    Backend, Capabilities, Consumer, ConsumerOptions, Error, HubOptions, HubProperties,
    InitialPosition, PartitionId, PartitionProperties, PartitionReader, Producer, ReaderOptions,
    Result,
};

use crate::checkpoint::open_checkpoint_store;
use crate::connector::Connector;
use crate::consumer::options::ProcessorOptions;
use crate::consumer::EventHubsConsumer;
use crate::error::from_hubs;
use crate::producer::EventHubsProducer;
use crate::reader::EventHubsReader;

/// Largest event of the Standard tier (1 MiB): the capability reported until a producer has
/// read its sender link's own limit (larger on Premium and Dedicated), which producers enforce.
pub const STANDARD_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A connection to an Event Hubs namespace over AMQP.
///
/// Producers, consumers and readers each open their own AMQP connection, as separate SDK
/// clients do; consumer groups coordinate through the configured checkpoint store.
#[derive(Clone)]
pub struct EventHubsBackend {
    connector: Connector,
    store: Arc<dyn CheckpointStore>,
    initial_position: InitialPosition,
    processor: ProcessorOptions,
    /// The limit producers enforce: the last sender link's advertised maximum message size.
    max_event_bytes: Arc<AtomicUsize>,
}

impl std::fmt::Debug for EventHubsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubsBackend")
            .field("connector", &self.connector)
            .field("initial_position", &self.initial_position)
            .field("processor", &self.processor)
            .finish_non_exhaustive()
    }
}

impl EventHubsBackend {
    /// Validates `config`, builds credentials and opens the checkpoint store. Connections are
    /// opened per producer, consumer and reader, so this fails only on invalid configuration.
    pub async fn connect(config: &EventHubsConfig) -> Result<Self> {
        let connector = Connector::from_config(config)?;
        let processor = ProcessorOptions::from_config(config)?;
        let store = open_checkpoint_store(
            config.checkpoint_store.as_deref(),
            &config.checkpoint_store_options,
        )?;
        Ok(Self {
            connector,
            store,
            initial_position: config.initial_position,
            processor,
            max_event_bytes: Arc::new(AtomicUsize::new(STANDARD_MAX_EVENT_BYTES)),
        })
    }

    /// Uses `store` for consumer groups instead of the configured one.
    pub fn with_checkpoint_store(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.store = store;
        self
    }

    /// The fully qualified namespace.
    pub fn namespace(&self) -> &str {
        self.connector.namespace()
    }
}

#[async_trait]
impl Backend for EventHubsBackend {
    fn id(&self) -> &'static str {
        "eventhubs"
    }

    /// `max_event_bytes` is what producers enforce: the maximum message size the namespace's
    /// sender link advertised to the last producer opened (1 MiB, the Standard tier's, before
    /// any producer).
    fn capabilities(&self) -> Capabilities {
        Capabilities::minimal(self.max_event_bytes.load(Ordering::Relaxed))
            .with_partition_reader(true)
            .with_seek_by_time(true)
            .with_headers(true)
            .with_binary_keys(false)
            .with_explicit_partition(true)
    }

    async fn producer(&self, hub: &str) -> Result<Arc<dyn Producer>> {
        Ok(Arc::new(
            EventHubsProducer::open(self.connector.clone(), hub, &self.max_event_bytes).await?,
        ))
    }

    async fn consumer(&self, hub: &str, options: ConsumerOptions) -> Result<Arc<dyn Consumer>> {
        let initial = options.initial_position.unwrap_or(self.initial_position);
        Ok(Arc::new(
            EventHubsConsumer::join(
                &self.connector,
                self.store.clone(),
                hub,
                &options.group,
                initial,
                &self.processor,
            )
            .await?,
        ))
    }

    async fn partition_reader(
        &self,
        hub: &str,
        options: ReaderOptions,
    ) -> Result<Arc<dyn PartitionReader>> {
        let group = options.group.as_deref().unwrap_or("$Default");
        Ok(Arc::new(
            EventHubsReader::open(
                &self.connector,
                hub,
                group,
                options.partition,
                &options.start,
            )
            .await?,
        ))
    }

    async fn hub_properties(&self, hub: &str) -> Result<HubProperties> {
        let client = self.connector.consumer(hub, "$Default").await?;
        let what = format!("reading properties of hub `{hub}`");
        let read = async {
            client
                .get_eventhub_properties()
                .await
                .map_err(|e| from_hubs(&what, e))
        };
        let result = self.connector.timed(&what, read).await;
        let _ = client.close().await;
        let props = result?;
        let mut partitions = props
            .partition_ids
            .iter()
            .map(|p| {
                p.parse::<PartitionId>().map_err(|_| {
                    Error::new(
                        evhub_core::ErrorKind::Protocol,
                        format!("hub `{hub}` reports non-numeric partition id `{p}`"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        partitions.sort_unstable();
        Ok(HubProperties {
            name: props.name,
            partitions,
            created_at: props.created_on,
        })
    }

    async fn partition_properties(
        &self,
        hub: &str,
        partition: PartitionId,
    ) -> Result<PartitionProperties> {
        let client = self.connector.consumer(hub, "$Default").await?;
        let what = format!("reading properties of hub `{hub}` partition {partition}");
        let read = async {
            client
                .get_partition_properties(&partition.to_string())
                .await
                .map_err(|e| from_hubs(&what, e))
        };
        let result = self.connector.timed(&what, read).await;
        let _ = client.close().await;
        let p = result?;
        let end_offset = p.last_enqueued_sequence_number + 1;
        let begin_offset = if p.is_empty {
            end_offset
        } else {
            p.beginning_sequence_number
        };
        Ok(PartitionProperties {
            hub: hub.to_owned(),
            partition,
            begin_offset,
            end_offset,
            last_enqueued_at: if p.is_empty {
                None
            } else {
                p.last_enqueued_time_utc
            },
        })
    }

    async fn create_hub(&self, hub: &str, options: HubOptions) -> Result<()> {
        let _ = (hub, options);
        Err(Error::unsupported(
            "eventhubs",
            "creating hubs (Event Hubs creates hubs through Azure Resource Manager, not AMQP)",
        ))
    }
}
