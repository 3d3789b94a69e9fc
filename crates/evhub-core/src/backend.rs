//! The backend trait: one connection to an event-hub service.

use std::sync::Arc;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::consumer::{Consumer, ConsumerOptions, PartitionReader, ReaderOptions};
use crate::error::Result;
use crate::event::PartitionId;
use crate::metadata::{HubOptions, HubProperties, PartitionProperties};
use crate::producer::Producer;

/// A connection to one event-hub service (a Kafka cluster, an Event Hubs namespace, the embedded
/// memory hub). Object safe: services hold it as `Arc<dyn Backend>` and never name the backend.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Backend id: `memory`, `kafka`, `eventhubs-kafka` or `eventhubs`.
    fn id(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// A producer for `hub`. Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when
    /// the hub does not exist.
    async fn producer(&self, hub: &str) -> Result<Arc<dyn Producer>>;

    /// Joins a consumer group on `hub`.
    async fn consumer(&self, hub: &str, options: ConsumerOptions) -> Result<Arc<dyn Consumer>>;

    /// Reads one partition of `hub` directly (see [`Capabilities::partition_reader`]).
    async fn partition_reader(
        &self,
        hub: &str,
        options: ReaderOptions,
    ) -> Result<Arc<dyn PartitionReader>>;

    /// Hub metadata.
    async fn hub_properties(&self, hub: &str) -> Result<HubProperties>;

    /// Partition metadata.
    async fn partition_properties(
        &self,
        hub: &str,
        partition: PartitionId,
    ) -> Result<PartitionProperties>;

    /// Creates a hub (see [`Capabilities::create_hub`]). Creating an existing hub with the same
    /// partition count succeeds.
    async fn create_hub(&self, hub: &str, options: HubOptions) -> Result<()>;
}
