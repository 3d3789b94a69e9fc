//! A Docker-free Azure Event Hubs emulator speaking AMQP 1.0, good enough
//! that Microsoft's SDKs (Rust `azure_messaging_eventhubs`, Python
//! `azure-eventhub`) run their send, receive and management flows against it.
//!
//! ```
//! use evhub_emulator::Emulator;
//!
//! # async fn example() -> Result<(), evhub_emulator::EmulatorError> {
//! // Port 0 picks a free port; the handle reports the real address.
//! let emulator = Emulator::builder()
//!     .port(0)
//!     .hub("orders", 2)
//!     .consumer_group("orders", "billing")
//!     .start()
//!     .await?;
//! // For the Python SDK (it honours UseDevelopmentEmulator=true):
//! let connection_string = emulator.connection_string("orders");
//! assert!(connection_string.contains(&emulator.local_addr().port().to_string()));
//! // For the Rust SDK: `ProducerClient::builder().with_custom_endpoint(emulator.endpoint())`.
//! assert!(emulator.endpoint().starts_with("amqp://127.0.0.1:"));
//! // Hubs can also be added while running.
//! emulator.create_hub("audit", 1)?;
//! assert_eq!(emulator.hub_names(), ["audit", "orders"]);
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
//! ```
//!
//! What it implements:
//! - SASL ANONYMOUS and PLAIN; plain TCP and optional TLS (directly on the
//!   socket, self-signed via `rcgen` or from PEM files).
//! - `$cbs` put-token with SAS HMAC-SHA256 checks (401 for wrong or expired
//!   tokens; later attaches are refused with `amqp:unauthorized-access`), or
//!   any token with [`EmulatorBuilder::no_auth`].
//! - `$management` READ of hub and partition properties.
//! - Senders to a hub or a partition; batches (format `0x80013700`) are
//!   unpacked; partition keys map to a stable partition, otherwise round
//!   robin; messages above `max_message_size` (advertised, 1 MiB default) are
//!   rejected with `com.microsoft:message-size-exceeded`.
//! - Receivers with selector filters on offset, sequence number and enqueued
//!   time (inclusive/exclusive, `-1`, `@latest`), epoch readers that steal
//!   with `amqp:link:stolen`, at most 5 plain readers per partition and group,
//!   credit-based delivery with `x-opt-*` annotations.
//! - Storage in memory or in checksummed segment files
//!   ([`EmulatorBuilder::data_dir`]) with a crash-safe recovery and an
//!   [`FsyncPolicy`]; retention by count, age and bytes; a memory budget.
//! - Hostile input never takes it down: frame, nesting-depth and reassembly
//!   limits are checked on raw bytes before decoding, and resources per
//!   client are bounded ([`Limits`]); see the crate README.

mod address;
mod attach;
mod broker;
mod cbs;
mod clock;
pub mod config;
mod connection;
mod depth;
mod detach;
mod emulator;
mod encoding;
mod error;
mod filter;
mod frame_pad;
mod hub;
mod inbound;
mod management;
mod message;
mod node;
mod partition_key;
mod readers;
mod receiver;
mod response;
pub mod sas;
mod sasl;
mod sender;
mod server;
mod session;
mod settle;
mod storage;
mod tls;

pub use config::{EmulatorConfig, FsyncPolicy, HubConfig, Limits, SasKey, TlsConfig};
pub use emulator::{connection_string, Emulator, EmulatorBuilder, EmulatorHandle};
pub use error::{EmulatorError, Result};
