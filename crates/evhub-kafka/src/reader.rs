//! Partition reader: a consumer that assigns one partition and seeks, outside any group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use async_trait::async_trait;
use evhub_core::{
    Error, PartitionId, PartitionReader, ReaderOptions, ReceivedEvent, Result, StartPosition,
};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::backend::{blocking, KafkaBackend};
use crate::config::ClientKind;
use crate::consumer::received_event;
use crate::context::EvhubContext;
use crate::error::map_kafka_error;

type Reader = StreamConsumer<EvhubContext>;

/// Reads one partition from a start position; commits nothing.
pub struct KafkaReader {
    hub: String,
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
    pub(crate) async fn open(
        backend: KafkaBackend,
        hub: String,
        options: ReaderOptions,
    ) -> Result<Self> {
        let settings = backend.settings();
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
        let offset = resolve(&backend, &consumer, &hub, partition, &options.start).await?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&hub, partition as i32, Offset::Offset(offset))
            .map_err(|e| map_kafka_error("building assignment", e))?;
        consumer.assign(&list).map_err(|e| {
            map_kafka_error(&format!("reading hub `{hub}` partition {partition}"), e)
        })?;
        let (stop, _) = watch::channel(false);
        Ok(Self {
            hub,
            partition,
            consumer,
            closed: AtomicBool::new(false),
            stop,
        })
    }
}

/// The concrete offset a start position means now, clamped to the retained range (like the
/// memory backend): `Latest` is the end at open time, so events sent after `open` returns are
/// read.
async fn resolve(
    backend: &KafkaBackend,
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
        let mut stop = self.stop.subscribe();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed("partition reader"));
            }
            let message = tokio::select! {
                m = self.consumer.recv() => m,
                _ = stop.wait_for(|s| *s) => return Err(Error::closed("partition reader")),
            };
            match message {
                Ok(m) => {
                    if let Some(event) = received_event(&m) {
                        return Ok(event);
                    }
                }
                Err(e) => {
                    let err = map_kafka_error(
                        &format!("reading hub `{}` partition {}", self.hub, self.partition),
                        e,
                    );
                    if err.is_retriable() {
                        tracing::debug!("partition reader: {err}");
                        continue;
                    }
                    return Err(err);
                }
            }
        }
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
