//! Memory producer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::event::{Delivery, Event, PartitionId};
use crate::producer::Producer;
use crate::telemetry;

use super::hub::HubState;
use super::partitioner::partition_for_key;

#[derive(Debug)]
pub(crate) struct MemoryProducer {
    hub: Arc<HubState>,
    max_event_bytes: usize,
    round_robin: AtomicU32,
    closed: AtomicBool,
}

impl MemoryProducer {
    pub fn new(hub: Arc<HubState>, max_event_bytes: usize) -> Self {
        Self {
            hub,
            max_event_bytes,
            round_robin: AtomicU32::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn check(&self, event: &Event) -> Result<PartitionId> {
        self.check_with(event, || {
            self.round_robin.fetch_add(1, Ordering::Relaxed) % self.hub.partition_count()
        })
    }

    /// Validates `event` and picks its partition; `keyless` places events without key or
    /// partition.
    fn check_with(
        &self,
        event: &Event,
        keyless: impl FnOnce() -> PartitionId,
    ) -> Result<PartitionId> {
        let size = event.encoded_len();
        if size > self.max_event_bytes {
            return Err(Error::too_large(size, self.max_event_bytes));
        }
        let count = self.hub.partition_count();
        match (event.partition, &event.key) {
            (Some(p), _) if p >= count => Err(Error::invalid_input(format!(
                "hub `{}` has {count} partitions, no partition {p}",
                self.hub.name
            ))),
            (Some(p), _) => Ok(p),
            (None, Some(key)) => Ok(partition_for_key(key, count)),
            (None, None) => Ok(keyless()),
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("producer"));
        }
        Ok(())
    }
}

#[async_trait]
impl Producer for MemoryProducer {
    fn hub(&self) -> &str {
        &self.hub.name
    }

    async fn send(&self, event: Event) -> Result<Delivery> {
        self.ensure_open()?;
        let partition = self.check(&event)?;
        let span = telemetry::send_span("memory", &self.hub.name, Some(partition));
        let offset = self
            .hub
            .append(partition, vec![event])
            .instrument(span.clone())
            .await?;
        span.record("messaging.message.id", offset);
        Ok(Delivery {
            partition: Some(partition),
            offset: Some(offset),
        })
    }

    async fn send_batch(&self, events: Vec<Event>) -> Result<Vec<Delivery>> {
        self.ensure_open()?;
        // Events without key or partition stick to one partition per batch (as Kafka's sticky
        // partitioner does): one append instead of one per event.
        let sticky = self.round_robin.fetch_add(1, Ordering::Relaxed) % self.hub.partition_count();
        let partitions = events
            .iter()
            .map(|e| self.check_with(e, || sticky))
            .collect::<Result<Vec<_>>>()?;
        let span = telemetry::send_span("memory", &self.hub.name, None);
        span.record("messaging.batch.message_count", events.len());
        // One append per partition, keeping the batch's order within each partition.
        let mut by_partition: BTreeMap<PartitionId, Vec<Event>> = BTreeMap::new();
        for (event, &partition) in events.into_iter().zip(&partitions) {
            by_partition.entry(partition).or_default().push(event);
        }
        let mut next_offset = BTreeMap::new();
        async {
            for (partition, run) in by_partition {
                let first = self.hub.append(partition, run).await?;
                next_offset.insert(partition, first);
            }
            Ok::<_, Error>(())
        }
        .instrument(span)
        .await?;
        Ok(partitions
            .into_iter()
            .map(|partition| {
                let offset = next_offset.get_mut(&partition).map(|o| {
                    *o += 1;
                    *o - 1
                });
                Delivery {
                    partition: Some(partition),
                    offset,
                }
            })
            .collect())
    }

    async fn flush(&self) -> Result<()> {
        // Appends are acknowledged synchronously; nothing is ever in flight.
        self.ensure_open()
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
