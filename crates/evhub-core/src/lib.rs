//! Core of evhub: one producer/consumer API over event hubs.
//!
//! This crate holds the traits every backend implements ([`Backend`], [`Producer`],
//! [`Consumer`], [`PartitionReader`]), the owned event types, [`Capabilities`], the typed
//! [`Error`], the configuration model ([`config`]) and the embedded [`memory`] backend.
//! Services usually depend on the `evhub` facade crate, which re-exports all of this and picks
//! backends by configuration.
//!
//! ```
//! use evhub_core::{memory::MemoryBackend, Backend, ConsumerOptions, Event, HubOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub_core::Result<()> {
//! let hub = MemoryBackend::default();
//! hub.create_hub("telemetry", HubOptions::with_partitions(2)).await?;
//!
//! let producer = hub.producer("telemetry").await?;
//! producer
//!     .send_batch(vec![Event::new("a").with_key("dev-1"), Event::new("b").with_key("dev-1")])
//!     .await?;
//!
//! let consumer = hub.consumer("telemetry", ConsumerOptions::new("dashboard")).await?;
//! let first = consumer.recv().await?;
//! let second = consumer.recv().await?;
//! assert_eq!((&first.payload[..], &second.payload[..]), (&b"a"[..], &b"b"[..]));
//! consumer.commit(&second.checkpoint()).await?; // covers `first` too: same partition
//! consumer.close().await?;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod capabilities;
pub mod checkpoint;
pub mod config;
pub mod consumer;
pub mod error;
pub mod event;
pub mod group;
pub mod memory;
pub mod metadata;
pub mod position;
pub mod producer;
pub mod telemetry;

pub use backend::Backend;
pub use capabilities::Capabilities;
pub use checkpoint::{Checkpoint, CommitSummary, CommitTracker};
pub use config::Config;
pub use consumer::{
    event_stream, CommitOutcome, Consumer, ConsumerOptions, PartitionReader, ReaderOptions,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use event::{Delivery, Event, Headers, PartitionId, ReceivedEvent};
pub use metadata::{HubOptions, HubProperties, PartitionProperties};
pub use position::{InitialPosition, StartPosition};
pub use producer::{PendingBatch, Producer};

// Re-exported so backends and users name the same versions.
pub use async_trait::async_trait;
pub use bytes::Bytes;
