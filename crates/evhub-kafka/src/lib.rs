//! Apache Kafka (`kafka`) and Azure Event Hubs Kafka-endpoint (`eventhubs-kafka`) backends for
//! evhub, on [`rdkafka`] with a vendored librdkafka (SASL_SSL with PLAIN, SCRAM and
//! OAUTHBEARER).
//!
//! ```no_run
//! use evhub_core::{config::KafkaConfig, Backend, ConsumerOptions, Event, HubOptions};
//! use evhub_kafka::KafkaBackend;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub_core::Result<()> {
//! let kafka = KafkaBackend::connect(&KafkaConfig::new("127.0.0.1:9092")).await?;
//! kafka.create_hub("orders", HubOptions::with_partitions(4)).await?;
//! kafka.producer("orders").await?.send(Event::new("order #1").with_key("customer-7")).await?;
//! let consumer = kafka.consumer("orders", ConsumerOptions::new("billing")).await?;
//! let event = consumer.recv().await?;
//! consumer.commit(&event.checkpoint()).await?; // commits offset + 1, Kafka's convention
//! consumer.close().await?;
//! # Ok(()) }
//! ```
//!
//! Semantics, shared with every evhub backend:
//! - a send resolves when the broker acknowledged the event (`acks=all`; idempotent producer
//!   on by default for `kafka`); `send_batch` enqueues all events, then awaits them together;
//! - keys are hashed with murmur2 like the Java client, so the same key lands on the same
//!   partition as with Java producers and the memory backend;
//! - consumers are group members; partitions without a checkpoint start at
//!   `initial_position` (default `earliest`); a checkpoint outside the retained range
//!   (expired by retention) resumes at the earliest retained event with a warning, never
//!   silently at the latest; nothing is committed automatically: `commit(checkpoint)` commits
//!   `offset + 1` and waits for the broker; checkpoints in flight during a rebalance are
//!   committed before the partition is revoked;
//! - a poll thread per member keeps librdkafka served while the application is busy
//!   (rebalances, heartbeats, `max.poll.interval.ms`): fetched events wait in a bounded queue,
//!   and when it is full the member pauses fetching instead of polling less; `recv_batch`
//!   hands over what is queued in one step, the events of one fetch sharing one buffer;
//! - `close()` ends `recv` at once, commits checkpoints still in flight and leaves the group,
//!   returning within [`CLOSE_TIMEOUT`] even when the broker is gone;
//! - the `librdkafka` pass-through map refuses settings that would commit unprocessed events
//!   (`enable.auto.commit`, `enable.auto.offset.store`, ...) unless
//!   [`ALLOW_AT_MOST_ONCE`] (`"evhub.allow_at_most_once" = "true"`) is set in it;
//! - partition readers assign one partition and seek (`offsets_for_times` for time positions).
//!
//! The `eventhubs-kafka` profile builds the librdkafka settings Event Hubs needs from a
//! connection string (SASL_SSL, PLAIN, user `$ConnectionString`) or from an Azure AD credential
//! (OAUTHBEARER with tokens from `azure_identity`), plus the recommended timeouts. Secrets are
//! never printed: `Debug` shows property names only and error texts are scrubbed.
//!
//! ```
//! use evhub_core::config::Config;
//! use evhub_kafka::{ClientKind, Settings};
//! let config = Config::from_toml_str(r#"
//!     backend = "eventhubs-kafka"
//!     connection_string = "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"
//! "#)?;
//! let Config::EventHubsKafka(config) = config else { unreachable!() };
//! let settings = Settings::from_event_hubs(&config, None)?;
//! let get = |key| settings.property(ClientKind::Producer, key);
//! assert_eq!(get("bootstrap.servers").as_deref(), Some("demo.servicebus.windows.net:9093"));
//! assert_eq!(get("sasl.username").as_deref(), Some("$ConnectionString"));
//! assert_eq!(get("metadata.max.age.ms").as_deref(), Some("180000"));
//! assert!(!settings.capabilities.create_hub && !settings.capabilities.transactions);
//! assert!(!format!("{settings:?}").contains("c2VjcmV0")); // the key never shows
//! # Ok::<(), evhub_core::Error>(())
//! ```
#![warn(missing_docs)]

// Dependencies flow downwards: `backend` builds the clients; `producer`, `consumer` and
// `reader` use `cluster` (the shared connection), `convert` and `group`; everything may use
// `util`, `config`, `error` and `context`.
mod ack;
mod backend;
mod cluster;
mod config;
mod consumer;
mod context;
mod convert;
mod error;
mod group;
mod oauth;
mod producer;
mod reader;
mod util;

#[cfg(test)]
mod mock_tests;

pub use backend::KafkaBackend;
pub use config::{
    ClientKind, Settings, ALLOW_AT_MOST_ONCE, DEFAULT_MAX_EVENT_BYTES, EVENT_HUBS_MESSAGE_MAX_BYTES,
};
pub use consumer::CLOSE_TIMEOUT;
pub use error::{kind_of_code, map_kafka_error};
pub use oauth::TokenSource;
pub use rdkafka;
