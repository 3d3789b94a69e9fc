//! Partition reader: a consumer that assigns one partition and seeks, outside any group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use evhub_core::{
    Error, PartitionId, PartitionReader, ReaderOptions, ReceivedEvent, Result, StartPosition,
};
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::ClientKind;
use crate::context::EvhubContext;
use crate::convert::{self, buffered_len, BufferPool, BATCH_BYTES};
use crate::error::map_kafka_error;
use crate::util::blocking;

type Reader = StreamConsumer<EvhubContext>;

/// Reads one partition from a start position; commits nothing.
pub struct KafkaReader {
    hub: Arc<str>,
    buffers: Arc<BufferPool>,
    partition: PartitionId,
    consumer: Arc<Reader>,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("hub", &self.hub)
            .field("partition", &self.partition)
            .finish()
    }
}

impl KafkaReader {
    pub(crate) async fn open(cluster: Cluster, hub: &str, options: ReaderOptions) -> Result<Self> {
        let settings = cluster.settings();
        let hub: Arc<str> = Arc::from(hub);
        let partition = options.partition;
        let mut config = settings.client_config(ClientKind::Reader);
        // librdkafka wants a group id for assign(); this one never joins or commits.
        config.set("group.id", format!("evhub-reader-{}", uuid::Uuid::new_v4()));
        config.set("auto.offset.reset", "earliest");
        let consumer: Reader = config
            .create_with_context(EvhubContext::new(
                settings.backend_id,
                settings.token_source.clone(),
            ))
            .map_err(|e| map_kafka_error("creating partition reader", e))?;
        let consumer = Arc::new(consumer);
        let offset = resolve(&cluster, &consumer, &hub, partition, &options.start).await?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&hub, partition as i32, Offset::Offset(offset))
            .map_err(|e| map_kafka_error("building assignment", e))?;
        consumer.assign(&list).map_err(|e| {
            map_kafka_error(&format!("reading hub `{hub}` partition {partition}"), e)
        })?;
        let (stop, _) = watch::channel(false);
        Ok(Self {
            hub,
            buffers: Arc::default(),
            partition,
            consumer,
            closed: AtomicBool::new(false),
            stop,
        })
    }
}

impl KafkaReader {
    /// The next message (waiting at most `wait`, or until one comes), then up to `max - 1`
    /// more that librdkafka already fetched, converted in one step. Cancel-safe: nothing is
    /// taken from librdkafka before the wait is over, and the rest runs without awaiting.
    async fn read(&self, max: usize, wait: Option<Duration>) -> Result<Vec<ReceivedEvent>> {
        let mut stop = self.stop.subscribe();
        let mut stream = self.consumer.stream();
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed("partition reader"));
            }
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, stream.next()).await.ok(),
                    None => Some(stream.next().await),
                }
            };
            let first = tokio::select! {
                m = next => m,
                _ = stop.wait_for(|s| *s) => return Err(Error::closed("partition reader")),
            };
            let Some(first) = first.flatten() else {
                return Ok(Vec::new()); // waited `wait` for nothing
            };
            let mut messages: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Ok(m) => {
                        bytes += buffered_len(&m);
                        messages.push(m);
                    }
                    Err(e) => {
                        let err = map_kafka_error(
                            &format!("reading hub `{}` partition {}", self.hub, self.partition),
                            e,
                        );
                        if !err.is_retriable() {
                            if messages.is_empty() {
                                return Err(err);
                            }
                            // A persistent error comes again with the next fetch.
                            tracing::warn!("partition reader: {err}");
                            break;
                        }
                        tracing::debug!("partition reader: {err}");
                    }
                }
                if messages.len() < max && bytes < BATCH_BYTES {
                    next = stream.next().now_or_never().flatten();
                }
            }
            if !messages.is_empty() {
                return Ok(convert::events(&self.hub, &messages, &self.buffers));
            }
        }
    }
}

/// The concrete offset a start position means now, clamped to the retained range (like the
/// memory backend): `Latest` is the end at open time, so events sent after `open` returns are
/// read.
async fn resolve(
    backend: &Cluster,
    consumer: &Arc<Reader>,
    hub: &str,
    partition: PartitionId,
    start: &StartPosition,
) -> Result<i64> {
    let (low, high) = backend.watermarks(hub, partition).await?;
    Ok(match start {
        StartPosition::Earliest => low,
        StartPosition::Latest => high,
        StartPosition::Offset(o) => (*o).clamp(low, high),
        StartPosition::After(o) => o.saturating_add(1).clamp(low, high),
        StartPosition::Time(t) => {
            let millis = t
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(hub, partition as i32, Offset::Offset(millis))
                .map_err(|e| map_kafka_error("building time query", e))?;
            let consumer = consumer.clone();
            let timeout = backend.settings().request_timeout;
            let started = Instant::now();
            let answer =
                blocking(move || consumer.offsets_for_times(query, Timeout::After(timeout)))
                    .await?
                    .map_err(|e| {
                        backend.explain(
                            map_kafka_error("looking up offsets by time", e),
                            started.elapsed(),
                        )
                    })?;
            let found = answer
                .find_partition(hub, partition as i32)
                .map(|e| e.offset());
            match found {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                // No event at or after that time: start at the end.
                _ => high,
            }
        }
    })
}

#[async_trait]
impl PartitionReader for KafkaReader {
    fn hub(&self) -> &str {
        &self.hub
    }

    fn partition(&self) -> PartitionId {
        self.partition
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        let mut batch = self.read(1, None).await?;
        batch.pop().ok_or_else(|| Error::closed("partition reader"))
    }

    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.read(max, Some(wait)).await
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let consumer = self.consumer.clone();
        blocking(move || consumer.unassign())
            .await?
            .map_err(|e| map_kafka_error("closing partition reader", e))
    }
}
