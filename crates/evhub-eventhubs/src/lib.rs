//! The `eventhubs` backend of evhub: Azure Event Hubs over AMQP through Microsoft's
//! `azure_messaging_eventhubs` SDK, with consumer groups balanced by the SDK's `EventProcessor`
//! over checkpoint stores on Apache `object_store` (Azure Blob, S3, GCS, local directory,
//! memory).
//!
//! Services normally reach it through the `evhub` facade (feature `eventhubs`) and write
//! against the backend-neutral traits, shown here on the embedded memory backend:
//!
//! ```
//! use evhub_core::{memory::MemoryBackend, Backend, ConsumerOptions, Event, HubOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub_core::Result<()> {
//! // With this crate: `let hub = evhub_eventhubs::EventHubsBackend::connect(&config).await?;`
//! let hub = MemoryBackend::default();
//! hub.create_hub("orders", HubOptions::with_partitions(2)).await?;
//! hub.producer("orders").await?.send(Event::new("paid").with_key("order-1")).await?;
//! let consumer = hub.consumer("orders", ConsumerOptions::new("billing")).await?;
//! let event = consumer.recv().await?;
//! consumer.commit(&event.checkpoint()).await?;
//! # Ok(()) }
//! ```
//!
//! Mapping rules: the partition key is the `x-opt-partition-key` annotation (UTF-8 strings
//! only, so `binary_keys = false`); headers are AMQP application properties stored as binary,
//! and string properties written by other clients read back as their UTF-8 bytes; an event's
//! offset is its sequence number, the service offset string is kept in `service_offset`.
//!
//! Consumer groups: each member runs the SDK's `EventProcessor` with Microsoft's processor
//! options (`load_balancing_interval_ms`, `partition_ownership_expiration_interval_ms`,
//! `load_balancing_strategy`, `prefetch_count`, `start_positions`) over a checkpoint store in
//! the blob layout Microsoft's processors share ([`checkpoint`]), so evhub members and
//! `EventProcessorClient`s can split one group. Every store or balancing failure reaches
//! `recv` (permanent ones end the member), `recv_batch` hands over what the receivers already
//! fetched, and a member replaces a connection the SDK cannot repair (receivers failing
//! repeatedly, or hanging while the partition holds newer events).
//!
//! Authentication comes from [`evhub_core::config::EventHubsConfig`]: a connection string with
//! a SAS key or a SAS token, or `namespace` + an Azure AD `credential` (`default`,
//! `client-secret`, `managed-identity`, `azure-cli`; the chain shared with `eventhubs-kafka`,
//! see `evhub_azure`). `UseDevelopmentEmulator=true` or
//! `custom_endpoint` connect with plain AMQP to the given host and port.

mod backend;
pub mod checkpoint;
mod connector;
mod consumer;
mod convert;
mod error;
mod poison;
mod producer;
mod reader;

pub use backend::{EventHubsBackend, STANDARD_MAX_EVENT_BYTES};
pub use checkpoint::{open_checkpoint_store, ObjectStoreCheckpointStore};
pub use consumer::EventHubsConsumer;
pub use producer::EventHubsProducer;
pub use reader::EventHubsReader;

/// The SDK's checkpoint store trait and records, re-exported so custom stores name the same
/// versions.
pub use azure_messaging_eventhubs::models::{Checkpoint as StoreCheckpoint, Ownership};
pub use azure_messaging_eventhubs::CheckpointStore;
