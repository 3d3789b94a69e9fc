//! Producer on the backend's shared librdkafka producer: a send resolves when the broker
//! acknowledged it. Delivery reports are collected per batch ([`BatchAck`]), so a batch costs
//! one wake-up, not one per event.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use evhub_core::{telemetry, Delivery, Error, ErrorKind, Event, PendingBatch, Producer, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::util::Timeout;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::ack::{AckSlot, BatchAck, BatchResult};
use crate::cluster::Cluster;
use crate::error::map_kafka_error;
use crate::util::blocking;

/// Publishes to one topic through the backend's shared librdkafka producer.
pub struct KafkaProducer {
    cluster: Cluster,
    hub: String,
    partitions: AtomicU32,
    closed: AtomicBool,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("backend", &self.cluster.id())
            .field("hub", &self.hub)
            .finish()
    }
}

impl KafkaProducer {
    pub(crate) fn new(cluster: Cluster, hub: String, partitions: u32) -> Self {
        Self {
            cluster,
            hub,
            partitions: AtomicU32::new(partitions),
            closed: AtomicBool::new(false),
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("producer"));
        }
        Ok(())
    }

    /// Rejects events the backend cannot take before anything is sent.
    async fn check(&self, event: &Event) -> Result<()> {
        let max = self.cluster.settings().capabilities.max_event_bytes;
        let size = event.encoded_len();
        if size > max {
            return Err(Error::too_large(size, max));
        }
        if let Some(p) = event.partition {
            if p >= self.partitions.load(Ordering::Relaxed) {
                // Partitions may have been added since the producer was created.
                let now = self.cluster.partition_count(&self.hub).await?;
                self.partitions.store(now, Ordering::Relaxed);
                if p >= now {
                    return Err(Error::invalid_input(format!(
                        "hub `{}` has {now} partitions, no partition {p}",
                        self.hub
                    )));
                }
            }
        }
        Ok(())
    }

    /// Hands one event to librdkafka's queue (waiting while the queue is full); its delivery
    /// report goes to `slot`. Enqueue order is send order, so per-partition order holds.
    async fn enqueue(&self, event: &Event, slot: Box<AckSlot>) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8], Box<AckSlot>> =
            BaseRecord::with_opaque_to(&self.hub, slot).payload(&event.payload[..]);
        // Native header lists cost an allocation each: only build one when there are headers.
        if !event.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(event.headers.len());
            for (name, value) in &event.headers {
                headers = headers.insert(Header {
                    key: name.as_str(),
                    value: Some(&value[..]),
                });
            }
            record = record.headers(headers);
        }
        if let Some(key) = &event.key {
            record = record.key(&key[..]);
        }
        if let Some(p) = event.partition {
            record = record.partition(p as i32);
        }
        if let Some(ts) = event
            .timestamp
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
        {
            record = record.timestamp(ts);
        }
        let mut deadline = None;
        loop {
            match self.cluster.producer().send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // librdkafka's queue is full: wait for acknowledgements to make room.
                    let limit = *deadline.get_or_insert_with(|| {
                        Instant::now() + self.cluster.settings().request_timeout
                    });
                    if Instant::now() >= limit {
                        return Err(self.send_error(KafkaError::MessageProduction(
                            RDKafkaErrorCode::QueueFull,
                        )));
                    }
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(self.send_error(e)),
            }
        }
    }

    fn send_error(&self, e: KafkaError) -> Error {
        send_error(&self.cluster, &self.hub, e)
    }

    /// Checks every event, then hands them to librdkafka's queue in order; the receiver
    /// resolves when every queued event has its delivery report.
    async fn enqueue_all(&self, events: &[Event]) -> Result<oneshot::Receiver<BatchResult>> {
        self.ensure_open()?;
        for event in events {
            self.check(event).await?;
        }
        let (batch, done) = BatchAck::new(events.len());
        for (i, event) in events.iter().enumerate() {
            if let Err(e) = self.enqueue(event, batch.slot(i)).await {
                batch.not_queued(events.len() - i);
                return Err(e);
            }
        }
        Ok(done)
    }
}

/// A send error of hub `hub`; a timed-out send is explained by the connection state.
fn send_error(cluster: &Cluster, hub: &str, e: KafkaError) -> Error {
    let err = map_kafka_error(&format!("sending to hub `{hub}`"), e);
    match err.kind() {
        ErrorKind::TooLarge => err,
        // A timed-out send: explain it by the connection state (auth, unreachable).
        ErrorKind::Timeout => {
            let explained = cluster.explain(err, cluster.settings().request_timeout);
            if explained.kind() == ErrorKind::Auth {
                explained
            } else {
                Error::new(ErrorKind::Timeout, explained.message().to_owned())
                    .with_source(explained)
            }
        }
        _ => err,
    }
}

/// The acknowledgements of enqueued events, in input order.
async fn await_all(
    cluster: &Cluster,
    hub: &str,
    done: oneshot::Receiver<BatchResult>,
) -> Result<Vec<Delivery>> {
    match done.await {
        Ok(Ok(deliveries)) => Ok(deliveries),
        Ok(Err(e)) => Err(send_error(cluster, hub, e)),
        Err(_dropped) => Err(Error::closed("producer")),
    }
}

#[async_trait]
impl Producer for KafkaProducer {
    fn hub(&self) -> &str {
        &self.hub
    }

    async fn send(&self, event: Event) -> Result<Delivery> {
        let span = telemetry::send_span(
            self.cluster.settings().backend_id,
            &self.hub,
            event.partition,
        );
        async {
            let done = self.enqueue_all(std::slice::from_ref(&event)).await?;
            let delivery = await_all(&self.cluster, &self.hub, done)
                .await?
                .pop()
                .ok_or_else(|| Error::new(ErrorKind::Other, "no delivery report"))?;
            if let Some(offset) = delivery.offset {
                tracing::Span::current().record("messaging.message.id", offset);
            }
            Ok(delivery)
        }
        .instrument(span)
        .await
    }

    async fn send_batch(&self, events: Vec<Event>) -> Result<Vec<Delivery>> {
        let span = telemetry::send_span(self.cluster.settings().backend_id, &self.hub, None);
        span.record("messaging.batch.message_count", events.len());
        async {
            // Enqueue everything first (librdkafka batches per partition), then await the
            // acknowledgements together.
            let done = self.enqueue_all(&events).await?;
            await_all(&self.cluster, &self.hub, done).await
        }
        .instrument(span)
        .await
    }

    /// Returns once librdkafka holds every event: later calls queue behind them, so several
    /// batches can be in flight in order (with the idempotent producer, librdkafka keeps the
    /// per-partition order across its retries too).
    async fn enqueue_batch(&self, events: Vec<Event>) -> Result<PendingBatch> {
        let span = telemetry::send_span(self.cluster.settings().backend_id, &self.hub, None);
        span.record("messaging.batch.message_count", events.len());
        let done = self.enqueue_all(&events).instrument(span.clone()).await?;
        let (cluster, hub) = (self.cluster.clone(), self.hub.clone());
        Ok(PendingBatch::new(
            async move { await_all(&cluster, &hub, done).await }.instrument(span),
        ))
    }

    async fn flush(&self) -> Result<()> {
        self.ensure_open()?;
        self.flush_inner().await
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.flush_inner().await
    }
}

impl KafkaProducer {
    async fn flush_inner(&self) -> Result<()> {
        let cluster = self.cluster.clone();
        let timeout = cluster.settings().request_timeout;
        blocking(move || cluster.producer().flush(Timeout::After(timeout)))
            .await?
            .map_err(|e| map_kafka_error(&format!("flushing hub `{}`", self.hub), e))
    }
}
