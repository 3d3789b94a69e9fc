//! The benchmark workload through raw `azure_messaging_eventhubs`: `ProducerClient` batches and
//! one `EventReceiver` per partition (the SDK's own way to read a backlog), connected the way
//! the evhub eventhubs backend connects (emulator endpoint from the connection string).

use std::sync::Arc;
use std::time::Instant;

use azure_messaging_eventhubs::{
    ConsumerClient, EventReceiver, OpenReceiverOptions, ProducerClient, StartLocation,
    StartPosition,
};
use evhub::config::Config;
use evhub::ErrorKind;
use futures::StreamExt;
use tokio::task::JoinSet;

use super::stats::{decode, now_micros, payload, share, Clock, Latencies, RunResult};
use super::{join_one, join_tasks, pacing, within, Workload};
use crate::progress;

/// Description printed with the results.
pub const CLIENT: &str =
    "azure_messaging_eventhubs ProducerClient batches + one EventReceiver per partition";

/// Why the raw Event Hubs client has no mirror phase.
pub const NO_MIRROR: &str =
    "no hand-written azure_messaging_eventhubs mirror to compare with (the evhub mirror runs alone)";

/// How the raw client reaches the namespace.
pub struct RawEventHubs {
    connection_string: String,
    custom_endpoint: Option<String>,
}

impl RawEventHubs {
    /// The raw client for an `eventhubs` config, or why there is none.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let Config::EventHubs(c) = config else {
            return Err(format!(
                "no raw client comparison for backend `{}`",
                config.backend_id()
            ));
        };
        let cs = c.connection_string.as_ref().ok_or_else(|| {
            "the raw eventhubs comparison needs a connection string (SAS)".to_owned()
        })?;
        let (Some(name), Some(key)) = (cs.key_name(), cs.key()) else {
            return Err("the raw eventhubs comparison needs SharedAccessKeyName/Key".into());
        };
        let mut custom_endpoint = c.custom_endpoint.clone();
        if cs.use_development_emulator() && custom_endpoint.is_none() {
            // As the backend does: the SDK ignores UseDevelopmentEmulator and the port.
            custom_endpoint = Some(format!(
                "amqp://{}:{}",
                cs.host(),
                cs.port().unwrap_or(5672)
            ));
        }
        Ok(Self {
            connection_string: format!(
                "Endpoint=sb://{}/;SharedAccessKeyName={name};SharedAccessKey={}",
                cs.host(),
                key.expose()
            ),
            custom_endpoint,
        })
    }

    async fn producer(&self, hub: &str) -> evhub::Result<ProducerClient> {
        let mut builder = ProducerClient::builder().with_application_id("evhub-bench-raw".into());
        if let Some(endpoint) = &self.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        builder
            .open_with_connection_string(&self.connection_string, Some(hub))
            .await
            .map_err(sdk_error("opening raw producer"))
    }

    async fn consumer(&self, hub: &str) -> evhub::Result<ConsumerClient> {
        let mut builder = ConsumerClient::builder()
            .with_application_id(format!("evhub-bench-raw-{}", uuid::Uuid::new_v4()))
            .with_consumer_group("$Default".into());
        if let Some(endpoint) = &self.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        builder
            .open_with_connection_string(&self.connection_string, Some(hub))
            .await
            .map_err(sdk_error("opening raw consumer"))
    }
}

fn sdk_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> evhub::Error {
    move |e| evhub::Error::new(ErrorKind::Other, format!("raw eventhubs: {what}: {e}"))
}

/// Sends the payloads in SDK batches, a new batch whenever one is full.
async fn send_payloads(client: &ProducerClient, payloads: Vec<Vec<u8>>) -> evhub::Result<()> {
    let mut batch = client
        .create_batch(None)
        .await
        .map_err(sdk_error("creating batch"))?;
    for p in payloads {
        if !batch
            .try_add_event_data(p.clone(), None)
            .map_err(sdk_error("adding to batch"))?
        {
            client
                .send_batch(batch, None)
                .await
                .map_err(sdk_error("sending batch"))?;
            batch = client
                .create_batch(None)
                .await
                .map_err(sdk_error("creating batch"))?;
            if !batch
                .try_add_event_data(p, None)
                .map_err(sdk_error("adding to batch"))?
            {
                return Err(evhub::Error::new(
                    ErrorKind::TooLarge,
                    "raw eventhubs: event does not fit an empty batch",
                ));
            }
        }
    }
    if !batch.is_empty() {
        client
            .send_batch(batch, None)
            .await
            .map_err(sdk_error("sending batch"))?;
    }
    Ok(())
}

/// Produces, consumes and measures latency on hub `hub` (created on first use by the service).
pub async fn run(raw: &RawEventHubs, w: &Workload, hub: &str) -> evhub::Result<RunResult> {
    let mut producers = Vec::with_capacity(w.producers as usize);
    for _ in 0..w.producers {
        producers.push(Arc::new(raw.producer(hub).await?));
    }

    let bar = progress::bar(w.events, "raw produce");
    let clock = Clock::start();
    let mut tasks = JoinSet::new();
    for (i, producer) in producers.iter().cloned().enumerate() {
        let (from, to) = share(w.events, w.producers, i as u32);
        let (size, batch, bar) = (w.size, w.batch, bar.clone());
        tasks.spawn(async move {
            let mut seq = from;
            while seq < to {
                let end = (seq + batch).min(to);
                let payloads: Vec<Vec<u8>> = (seq..end).map(|s| payload(size, s)).collect();
                send_payloads(&producer, payloads).await?;
                bar.inc(end - seq);
                seq = end;
            }
            Ok(())
        });
    }
    within(w.phase_timeout, "raw produce phase", join_tasks(tasks)).await?;
    let produce = clock.phase(w.events, w.events * w.size as u64);
    bar.finish_and_clear();

    let bar = progress::bar(w.events, "raw consume");
    let joining = Instant::now();
    let consumer = raw.consumer(hub).await?;
    let partitions = consumer
        .get_eventhub_properties()
        .await
        .map_err(sdk_error("reading hub properties"))?
        .partition_ids;
    let mut receivers: Vec<EventReceiver> = Vec::with_capacity(partitions.len());
    for p in partitions {
        let options = OpenReceiverOptions {
            start_position: Some(StartPosition {
                location: StartLocation::Earliest,
                inclusive: false,
            }),
            prefetch: Some(300),
            ..Default::default()
        };
        receivers.push(
            consumer
                .open_receiver_on_partition(p, Some(options))
                .await
                .map_err(sdk_error("opening receiver"))?,
        );
    }
    let mut events =
        futures::stream::select_all(receivers.iter().map(|r| Box::pin(r.stream_events())));
    within(w.phase_timeout, "first event", next_event(&mut events)).await?;
    let join_seconds = joining.elapsed().as_secs_f64();
    let clock = Clock::start();
    let consume_rest = async {
        let mut bytes = 0u64;
        for _ in 1..w.events {
            let data = next_event(&mut events).await?;
            let body = data.event_data().body().unwrap_or_default();
            std::hint::black_box(decode(body));
            bytes += body.len() as u64;
            bar.inc(1);
        }
        Ok(bytes)
    };
    let bytes = within(w.phase_timeout, "raw consume phase", consume_rest).await?;
    let consume = clock.phase(w.events - 1, bytes);
    bar.finish_and_clear();

    let mut latencies = Latencies::default();
    if w.latency_events > 0 {
        let sender = tokio::spawn(paced_send(producers[0].clone(), w.clone()));
        let receive = async {
            let mut lat = Vec::with_capacity(w.latency_events as usize);
            while (lat.len() as u64) < w.latency_events {
                let data = next_event(&mut events).await?;
                if let Some((ts, seq)) = data.event_data().body().and_then(decode) {
                    if seq >= w.events {
                        lat.push(now_micros().saturating_sub(ts));
                    }
                }
            }
            Ok(lat)
        };
        latencies.0 = within(w.phase_timeout, "raw latency phase", receive).await?;
        join_one(sender).await?;
    }
    drop(events);
    for receiver in receivers {
        let _ = receiver.close().await;
    }
    let _ = consumer.close().await;
    for producer in producers {
        if let Ok(producer) = Arc::try_unwrap(producer) {
            let _ = producer.close().await;
        }
    }
    Ok(RunResult {
        produce,
        consume,
        join_seconds,
        latencies,
        consume_owned: None,
        consume_batch: None,
        // No hand-written Event Hubs mirror to compare with: the evhub mirror runs alone.
        mirror: None,
    })
}

async fn next_event<S, T, E>(events: &mut S) -> evhub::Result<T>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    match events.next().await {
        Some(Ok(data)) => Ok(data),
        Some(Err(e)) => Err(sdk_error("receiving")(e)),
        None => Err(evhub::Error::closed("raw receivers")),
    }
}

async fn paced_send(producer: Arc<ProducerClient>, w: Workload) -> evhub::Result<()> {
    let (tick, per_tick) = pacing(w.latency_rate);
    let mut interval = tokio::time::interval(tick);
    let mut inflight = JoinSet::new();
    let (mut seq, end) = (w.events, w.events + w.latency_events);
    while seq < end {
        interval.tick().await;
        let next = (seq + per_tick).min(end);
        let payloads: Vec<Vec<u8>> = (seq..next).map(|s| payload(w.size, s)).collect();
        let producer = producer.clone();
        inflight.spawn(async move { send_payloads(&producer, payloads).await });
        seq = next;
    }
    join_tasks(inflight).await
}
