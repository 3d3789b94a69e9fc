//! The producer: SDK batches per (partition, key) group, acknowledged sends only.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core_amqp::AmqpMessage;
use azure_messaging_eventhubs::error::ErrorKind as HubsKind;
use azure_messaging_eventhubs::{EventDataBatchOptions, ProducerClient, SendMessageOptions};
use evhub_core::telemetry::send_span;
use evhub_core::{Delivery, Error, Event, PartitionId, Producer, Result};
use tokio::sync::RwLock;
use tracing::Instrument;

use crate::connector::Connector;
use crate::convert::{encoded_size, encoded_size_bound, to_message_with_id, MessageIds};
use crate::error::from_hubs;

/// Placement of a group of events: explicit partition and partition key.
type Route = (Option<PartitionId>, Option<String>);

/// A message ready to send with an upper bound of its encoded size.
type Encoded = (AmqpMessage, usize);

/// A producer for one hub over one AMQP connection.
pub struct EventHubsProducer {
    hub: String,
    client: Mutex<Option<Arc<ProducerClient>>>,
    connector: Connector,
    max_message_size: usize,
    /// Sends hold a read guard; flush and close take the write guard to wait for them.
    in_flight: RwLock<()>,
    message_ids: MessageIds,
}

impl std::fmt::Debug for EventHubsProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubsProducer")
            .field("hub", &self.hub)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl EventHubsProducer {
    /// Opens the connection and the hub's sender link, and reads the link's maximum message size.
    pub(crate) async fn open(
        connector: Connector,
        hub: &str,
        enforced: &std::sync::atomic::AtomicUsize,
    ) -> Result<Self> {
        evhub_core::group::validate_hub_name(hub)?;
        let client = connector.producer(hub).await?;
        // The service accepts a sender attach for a missing hub and detaches it right after,
        // which the SDK retries as a transient link loss; ask the management node instead so a
        // missing hub fails fast with NotFound.
        let what = format!("opening hub `{hub}` for sending");
        let probe = async {
            client
                .get_eventhub_properties()
                .await
                .map_err(|e| from_hubs(&what, e))
        };
        if let Err(e) = connector.timed(&what, probe).await {
            let _ = client.close().await;
            return Err(e);
        }
        let max_message_size = connector
            .timed(
                "reading the maximum message size",
                link_max_size(&client, hub),
            )
            .await?;
        // The backend's capability reports what producers enforce.
        enforced.store(max_message_size, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            hub: hub.to_owned(),
            client: Mutex::new(Some(Arc::new(client))),
            connector,
            max_message_size,
            in_flight: RwLock::new(()),
            message_ids: MessageIds::new(),
        })
    }

    /// Largest message the sender link accepts, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn client(&self) -> Result<Arc<ProducerClient>> {
        self.client
            .lock()
            .map_err(|_| Error::new(evhub_core::ErrorKind::Other, "producer state poisoned"))?
            .clone()
            .ok_or_else(|| Error::closed("producer"))
    }

    /// Validates and encodes every event before anything is sent.
    fn encode(&self, events: &[Event]) -> Result<Vec<(Route, Encoded)>> {
        events
            .iter()
            .map(|event| {
                let message = to_message_with_id(event, self.message_ids.next())?;
                // Exact encoding only near the limit: most events are far below it.
                let mut bound = encoded_size_bound(event);
                if bound > self.max_message_size {
                    let size = encoded_size(&message)?;
                    if size > self.max_message_size {
                        return Err(Error::too_large(size, self.max_message_size));
                    }
                    bound = size;
                }
                let key = crate::convert::partition_key(event)?;
                Ok(((event.partition, key), (message, bound)))
            })
            .collect()
    }

    async fn send_encoded(&self, encoded: Vec<(Route, Encoded)>) -> Result<()> {
        let client = self.client()?;
        // Group by route, keeping first-appearance order of groups and order within a group.
        let mut groups: Vec<(Route, Vec<Encoded>)> = Vec::new();
        for (route, message) in encoded {
            match groups.iter_mut().find(|(r, _)| *r == route) {
                Some((_, messages)) => messages.push(message),
                None => groups.push((route, vec![message])),
            }
        }
        let hub = self.hub.as_str();
        // Groups go one after another: the SDK serializes sends on a link anyway, and this
        // keeps the order of groups deterministic.
        let work = async {
            for (route, messages) in groups {
                send_group(&client, hub, route.0, messages, self.max_message_size).await?;
            }
            Ok(())
        };
        self.connector
            .timed(&format!("sending to hub `{}`", self.hub), work)
            .await
    }
}

/// The sender link's maximum message size. The SDK does not expose it directly; asking for a
/// batch larger than any link allows returns the limit in `InvalidBatchSize`.
async fn link_max_size(client: &ProducerClient, hub: &str) -> Result<usize> {
    let options = EventDataBatchOptions {
        max_size_in_bytes: Some(u64::MAX),
        ..Default::default()
    };
    match client.create_batch(Some(options)).await {
        Err(e) => match e.kind {
            HubsKind::InvalidBatchSize { max_allowed, .. } => {
                Ok(usize::try_from(max_allowed).unwrap_or(usize::MAX))
            }
            _ => Err(from_hubs(&format!("opening hub `{hub}` for sending"), e)),
        },
        Ok(_) => Ok(usize::MAX),
    }
}

/// Sends one group in order: as many SDK batches as needed, an event that does not fit an
/// empty batch (the SDK counts the first message twice) on its own.
async fn send_group(
    client: &ProducerClient,
    hub: &str,
    partition: Option<PartitionId>,
    messages: Vec<Encoded>,
    max_batch_bytes: usize,
) -> Result<()> {
    let partition_id = partition.map(|p| p.to_string());
    let what = || match partition {
        Some(p) => format!("sending to hub `{hub}` partition {p}"),
        None => format!("sending to hub `{hub}`"),
    };
    let new_batch = || async {
        client
            .create_batch(Some(EventDataBatchOptions {
                partition_id: partition_id.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|e| from_hubs(&what(), e))
    };
    if messages.len() == 1 {
        let messages = messages.into_iter().map(|(m, _)| m).collect();
        return send_single(client, partition_id.clone(), messages, &what).await;
    }
    let mut batch = new_batch().await?;
    // Upper bound of what the batch holds, counted as the SDK counts it (the first message
    // twice, plus a per-message envelope): a message that surely fits is added without
    // keeping a copy for the retry below.
    let mut used = 0usize;
    for (message, bound) in messages {
        let cost = if batch.is_empty() { 2 * bound } else { bound } + 16;
        if used + cost <= max_batch_bytes {
            if !batch
                .try_add_amqp_message(message, None)
                .map_err(|e| from_hubs(&what(), e))?
            {
                return Err(Error::new(
                    evhub_core::ErrorKind::Other,
                    format!(
                        "{}: the batch refused an event below its size bound; nothing after it was sent",
                        what()
                    ),
                ));
            }
            used += cost;
            continue;
        }
        if batch
            .try_add_amqp_message(message.clone(), None)
            .map_err(|e| from_hubs(&what(), e))?
        {
            used += cost;
            continue;
        }
        if !batch.is_empty() {
            client
                .send_batch(batch, None)
                .await
                .map_err(|e| from_hubs(&what(), e))?;
            batch = new_batch().await?;
            used = 0;
            if batch
                .try_add_amqp_message(message.clone(), None)
                .map_err(|e| from_hubs(&what(), e))?
            {
                used = 2 * bound + 16;
                continue;
            }
        }
        send_single(client, partition_id.clone(), vec![message], &what).await?;
    }
    if !batch.is_empty() {
        client
            .send_batch(batch, None)
            .await
            .map_err(|e| from_hubs(&what(), e))?;
    }
    Ok(())
}

async fn send_single(
    client: &ProducerClient,
    partition_id: Option<String>,
    messages: Vec<AmqpMessage>,
    what: &(dyn Fn() -> String + Sync),
) -> Result<()> {
    for message in messages {
        client
            .send_message(
                message,
                Some(SendMessageOptions {
                    partition_id: partition_id.clone(),
                }),
            )
            .await
            .map_err(|e| from_hubs(&what(), e))?;
    }
    Ok(())
}

fn deliveries(events: &[Event]) -> Vec<Delivery> {
    events
        .iter()
        .map(|e| Delivery {
            partition: e.partition,
            offset: None,
        })
        .collect()
}

#[async_trait]
impl Producer for EventHubsProducer {
    fn hub(&self) -> &str {
        &self.hub
    }

    async fn send(&self, event: Event) -> Result<Delivery> {
        let span = send_span("eventhubs", &self.hub, event.partition);
        async {
            let _guard = self.in_flight.read().await;
            self.client()?;
            let encoded = self.encode(std::slice::from_ref(&event))?;
            self.send_encoded(encoded).await?;
            Ok(Delivery {
                partition: event.partition,
                offset: None,
            })
        }
        .instrument(span)
        .await
    }

    async fn send_batch(&self, events: Vec<Event>) -> Result<Vec<Delivery>> {
        let span = send_span("eventhubs", &self.hub, None);
        span.record("messaging.batch.message_count", events.len());
        async {
            let _guard = self.in_flight.read().await;
            self.client()?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let encoded = self.encode(&events)?;
            self.send_encoded(encoded).await?;
            Ok(deliveries(&events))
        }
        .instrument(span)
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.client()?;
        let _wait = self.in_flight.write().await;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let _wait = self.in_flight.write().await;
        let client = self
            .client
            .lock()
            .map_err(|_| Error::new(evhub_core::ErrorKind::Other, "producer state poisoned"))?
            .take();
        if let Some(client) = client {
            if let Ok(client) = Arc::try_unwrap(client) {
                // Every send was acknowledged before this point; a peer that misbehaves while
                // the connection goes away loses nothing, so a failed close is only logged.
                if let Err(e) = client.close().await {
                    let error = from_hubs(&format!("closing producer of `{}`", self.hub), e);
                    tracing::debug!(error = %error, "closing producer connection");
                }
            }
        }
        Ok(())
    }
}

impl Drop for EventHubsProducer {
    fn drop(&mut self) {
        let client = self.client.get_mut().ok().and_then(Option::take);
        if let (Some(client), Ok(runtime)) = (client, tokio::runtime::Handle::try_current()) {
            if let Ok(client) = Arc::try_unwrap(client) {
                runtime.spawn(async move {
                    let _ = client.close().await;
                });
            }
        }
    }
}
