//! Data-integration pipelines on evhub: a source consumer group → an async handler → zero, one
//! or many sinks, each on any backend (Kafka → Event Hubs mirrors, anything → memory in tests).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use evhub_core::{memory::MemoryBackend, Backend, ConsumerOptions, Event, HubOptions};
//! use evhub_pipeline::{handler_fn, Decision, Pipeline, RetryPolicy, ShutdownToken};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evhub_core::Result<()> {
//! let hub: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
//! for name in ["raw", "clean", "dead-letter"] {
//!     hub.create_hub(name, HubOptions::with_partitions(2)).await?;
//! }
//! let raw = hub.producer("raw").await?;
//! raw.send(Event::new("42").with_key("sensor-1")).await?;
//! raw.send(Event::new("oops").with_key("sensor-2")).await?;
//!
//! // Validate and enrich; bad records go to the dead-letter hub with the reason in headers.
//! let pipeline = Pipeline::builder(hub.clone(), "raw", "cleaner")
//!     .handler(handler_fn(|event: evhub_core::ReceivedEvent| async move {
//!         match std::str::from_utf8(&event.payload).ok().and_then(|s| s.parse::<f64>().ok()) {
//!             Some(v) => Ok(Decision::forward(event.to_event().with_header("celsius", v.to_string()))),
//!             None => Ok(Decision::dead_letter("payload is not a number")),
//!         }
//!     }))
//!     .sink("clean", hub.producer("clean").await?)
//!     .dead_letter(hub.producer("dead-letter").await?)
//!     .retry(RetryPolicy::default().with_max_attempts(3))
//!     .build()?;
//! let stats = pipeline.stats();
//! let shutdown = ShutdownToken::new();
//! let running = tokio::spawn(pipeline.run(shutdown.clone()));
//!
//! let clean = hub.consumer("clean", ConsumerOptions::new("loader")).await?;
//! let event = clean.recv().await?;
//! assert_eq!(&event.payload[..], b"42");
//! while stats.snapshot().dead_lettered < 1 {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! shutdown.shutdown(); // drains, commits, leaves the group
//! let summary = running.await.expect("pipeline task")?;
//! assert_eq!((summary.received, summary.handled, summary.dead_lettered), (2, 1, 1));
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **At-least-once end to end.** A source checkpoint is committed only when every event
//!   derived from the source event is acknowledged by its sink (or the source event is in the
//!   dead-letter hub). Checkpoints come from a [`CommitTracker`](evhub_core::CommitTracker), so
//!   a failed or unfinished event is never passed.
//! - **Order.** Events of a partition are handled in order, one lane per partition
//!   ([`key_concurrency`](PipelineBuilder::key_concurrency) splits a partition into per-key
//!   lanes); partitions proceed concurrently, up to
//!   [`partition_concurrency`](PipelineBuilder::partition_concurrency). A lane keeps up to
//!   [`batches_in_flight`](PipelineBuilder::batches_in_flight) batches queued at its sinks
//!   ([`Producer::enqueue_batch`](evhub_core::Producer::enqueue_batch)) and finishes them in
//!   order; when a sink send fails, the failed batch and every batch queued after it are sent
//!   again in order, so the sink may hold duplicates but the last copy of each event is in
//!   source order.
//! - **Bounded memory.** At most [`max_in_flight`](PipelineBuilder::max_in_flight) events and
//!   [`max_in_flight_bytes`](PipelineBuilder::max_in_flight_bytes) are received and unfinished;
//!   beyond that the pipeline stops receiving until work completes (backpressure).
//! - **Failures.** Retriable errors (handler or sink) are retried per [`RetryPolicy`]
//!   (exponential backoff, jitter, attempts and time bounds). Non-retriable errors, exhausted
//!   retries and [`Decision::DeadLetter`] send the source event, byte-exact with key and
//!   headers, to the dead-letter hub with [reason headers](dead_letter::headers); then the
//!   checkpoint moves on. Without a dead-letter hub the partition stops with an error naming
//!   the event, and the checkpoint stays before it. Sink errors that concern the sink rather
//!   than the event (hub not found, auth, closed producer, configuration) stop the pipeline
//!   instead of dead-lettering every event.
//! - **Shutdown and rebalances.** [`ShutdownToken`] drains in-flight events, commits what is
//!   done, flushes sinks and leaves the group. A revoked partition's unfinished work is dropped
//!   without committing (its new owner processes it again); a late commit returns `NotOwned`
//!   and is counted, not fatal.
//! - **Observability.** [`Stats::snapshot`] (received, handled, skipped, produced, retried,
//!   dead-lettered, committed, in-flight, lag per partition from
//!   [`Backend::partition_properties`](evhub_core::Backend::partition_properties)); `tracing`
//!   events for progress, retries, dead letters and stops; the source `traceparent` continues
//!   in every output as a child context.

mod builder;
pub mod dead_letter;
mod decision;
mod handler;
mod lag;
mod retry;
mod run;
mod shutdown;
mod stats;
mod worker;

pub use builder::{Pipeline, PipelineBuilder, Sink};
pub use decision::{Decision, Output};
pub use handler::{forward, handler_fn, FnHandler, Forward, Handler};
pub use retry::RetryPolicy;
pub use shutdown::ShutdownToken;
pub use stats::{PartitionSnapshot, Stats, StatsSnapshot, StoppedPartition};
