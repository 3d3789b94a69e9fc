//! Building a pipeline: source, handler, sinks, dead-letter hub and limits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use evhub_core::{Backend, ConsumerOptions, Error, Producer, Result};

use crate::handler::{forward, Handler};
use crate::retry::RetryPolicy;
use crate::stats::Stats;

/// A named destination of a pipeline: a producer on any backend.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Name used by [`Output::to`](crate::Output::to).
    pub name: String,
    /// Where events go.
    pub producer: Arc<dyn Producer>,
}

/// Tuning of a pipeline; every field has a builder method.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub batch_size: usize,
    pub batches_in_flight: usize,
    pub partition_concurrency: usize,
    pub key_concurrency: usize,
    pub commit_interval: Duration,
    pub lag_interval: Duration,
    pub drain_timeout: Duration,
    pub fail_fast: bool,
    pub propagate_trace: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            max_in_flight: PipelineBuilder::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: 64 * 1024 * 1024,
            batch_size: PipelineBuilder::DEFAULT_BATCH_SIZE,
            batches_in_flight: PipelineBuilder::DEFAULT_BATCHES_IN_FLIGHT,
            partition_concurrency: 0,
            key_concurrency: 1,
            commit_interval: Duration::from_millis(500),
            lag_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            fail_fast: true,
            propagate_trace: true,
        }
    }
}

/// A configured pipeline; start it with [`run`](Pipeline::run). See the [crate docs](crate).
pub struct Pipeline {
    pub(crate) source: Arc<dyn Backend>,
    pub(crate) hub: String,
    pub(crate) options: ConsumerOptions,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) sinks: Vec<Sink>,
    pub(crate) dead_letter: Option<Arc<dyn Producer>>,
    pub(crate) settings: Settings,
    pub(crate) stats: Stats,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source.id())
            .field("hub", &self.hub)
            .field("group", &self.options.group)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("dead_letter", &self.dead_letter.as_ref().map(|p| p.hub()))
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts building a pipeline that reads `hub` on `source` as consumer group `group`.
    pub fn builder(
        source: Arc<dyn Backend>,
        hub: impl Into<String>,
        group: impl Into<String>,
    ) -> PipelineBuilder {
        PipelineBuilder {
            source,
            hub: hub.into(),
            options: ConsumerOptions::new(group),
            handler: None,
            sinks: Vec::new(),
            dead_letter: None,
            settings: Settings::default(),
        }
    }

    /// The live counters of this pipeline (valid before, during and after [`run`](Self::run)).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

/// Builder of a [`Pipeline`].
pub struct PipelineBuilder {
    source: Arc<dyn Backend>,
    hub: String,
    options: ConsumerOptions,
    handler: Option<Arc<dyn Handler>>,
    sinks: Vec<Sink>,
    dead_letter: Option<Arc<dyn Producer>>,
    settings: Settings,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("hub", &self.hub)
            .field("group", &self.options.group)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// Default of [`max_in_flight`](Self::max_in_flight).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 100_000;
    /// Default of [`batch_size`](Self::batch_size).
    pub const DEFAULT_BATCH_SIZE: usize = 500;
    /// Default of [`batches_in_flight`](Self::batches_in_flight).
    pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 8;

    /// Consumer options (group, initial position) for the source.
    pub fn consumer_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// The handler; without one, events are forwarded unchanged to every sink ([`forward`]).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// A shared handler.
    pub fn shared_handler(mut self, handler: Arc<dyn Handler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Adds a sink named `name` (names are unique).
    pub fn sink(mut self, name: impl Into<String>, producer: Arc<dyn Producer>) -> Self {
        self.sinks.push(Sink {
            name: name.into(),
            producer,
        });
        self
    }

    /// The dead-letter hub (any backend). Without one, an event that cannot be processed stops
    /// its partition with an error instead of being skipped.
    pub fn dead_letter(mut self, producer: Arc<dyn Producer>) -> Self {
        self.dead_letter = Some(producer);
        self
    }

    /// Retry policy for retriable handler and sink errors (default: 5 attempts, 100 ms to 10 s
    /// backoff with jitter, 60 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// Most source events received and not finished (default 100 000; the byte limit usually
    /// binds first): backpressure on the source. Keep it well above one fetch of a partition
    /// (Kafka fetches up to 1 MiB per partition), or partitions are worked on one at a time.
    pub fn max_in_flight(mut self, events: usize) -> Self {
        self.settings.max_in_flight = events;
        self
    }

    /// Most bytes (key + payload + headers) of unfinished source events (default 64 MiB).
    pub fn max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_in_flight_bytes = bytes;
        self
    }

    /// Events a partition worker takes at once; their outputs go to each sink as one
    /// batch (default 500).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.settings.batch_size = events;
        self
    }

    /// Batches a partition worker keeps queued at its sinks while it handles the next ones
    /// (default 8). A batch is finished (and may be committed) only when every sink
    /// acknowledged it, in order. Sinks that queue on the client side (Kafka) then work on
    /// several batches per round trip; others acknowledge each batch before the next starts
    /// (see [`Producer::enqueue_batch`](evhub_core::Producer::enqueue_batch)). When a sink send
    /// fails, the worker waits for the batches queued after it, then sends the failed batch and
    /// those after it again, in order: the sink may hold duplicates, and the last copy of each
    /// event is in source order. 1 keeps one batch in flight.
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.settings.batches_in_flight = batches;
        self
    }

    /// Most partitions processed at the same time; 0 (default) means no limit.
    pub fn partition_concurrency(mut self, partitions: usize) -> Self {
        self.settings.partition_concurrency = partitions;
        self
    }

    /// Lanes per partition (default 1: strict partition order). With `n > 1`, events are
    /// spread over `n` lanes by key hash: order is kept per key, keys proceed concurrently.
    pub fn key_concurrency(mut self, lanes: usize) -> Self {
        self.settings.key_concurrency = lanes;
        self
    }

    /// How often finished work is committed to the source (default 500 ms; also at shutdown).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.settings.commit_interval = interval;
        self
    }

    /// How often lag and a progress `tracing` event are updated (default 5 s).
    pub fn lag_interval(mut self, interval: Duration) -> Self {
        self.settings.lag_interval = interval;
        self
    }

    /// How long a shutdown waits for in-flight events (default 30 s); unfinished ones are not
    /// committed and will be delivered again.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Whether a stopped partition (failure without dead-letter hub) stops the whole pipeline
    /// (default `true`). With `false` the other partitions keep running and
    /// [`run`](Pipeline::run) reports the stopped ones when it ends.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.settings.fail_fast = fail_fast;
        self
    }

    /// Whether outputs carry the source event's `traceparent` as a child context (default true).
    pub fn propagate_trace(mut self, propagate: bool) -> Self {
        self.settings.propagate_trace = propagate;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Pipeline> {
        evhub_core::group::validate_hub_name(&self.hub)
            .map_err(|e| Error::config(format!("pipeline source: {}", e.message())))?;
        if self.options.group.trim().is_empty() {
            return Err(Error::config("pipeline: the consumer group name is empty"));
        }
        let mut names = BTreeSet::new();
        for sink in &self.sinks {
            if !names.insert(sink.name.as_str()) {
                return Err(Error::config(format!(
                    "pipeline: sink name `{}` is used twice",
                    sink.name
                )));
            }
        }
        let s = &self.settings;
        s.retry.validate()?;
        for (value, name) in [
            (s.max_in_flight, "max_in_flight"),
            (s.max_in_flight_bytes, "max_in_flight_bytes"),
            (s.batch_size, "batch_size"),
            (s.batches_in_flight, "batches_in_flight"),
            (s.key_concurrency, "key_concurrency"),
        ] {
            if value == 0 {
                return Err(Error::config(format!(
                    "pipeline: `{name}` must be at least 1"
                )));
            }
        }
        if s.commit_interval.is_zero() || s.lag_interval.is_zero() {
            return Err(Error::config(
                "pipeline: `commit_interval` and `lag_interval` must be positive",
            ));
        }
        Ok(Pipeline {
            source: self.source,
            hub: self.hub,
            options: self.options,
            handler: self.handler.unwrap_or_else(|| Arc::new(forward())),
            sinks: self.sinks,
            dead_letter: self.dead_letter,
            settings: self.settings,
            stats: Stats::new(),
        })
    }
}
