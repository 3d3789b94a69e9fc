//! The benchmark workload through raw rdkafka (`FutureProducer`, `StreamConsumer`), with the
//! exact librdkafka properties the evhub Kafka backend uses for the same configuration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::config::Config;
use evhub::{Backend, HubOptions};
use evhub_kafka::{map_kafka_error, ClientKind, Settings};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;

use super::stats::{decode, now_micros, payload, share, Clock, Latencies, Phase, RunResult};
use super::{join_one, join_tasks, pacing, within, Workload};
use crate::progress;

/// Description printed with the results.
pub const CLIENT: &str =
    "rdkafka FutureProducer + StreamConsumer, same librdkafka properties as evhub-kafka";

/// The librdkafka settings of the configured Kafka backend, or why there is no raw client.
pub fn settings(config: &Config) -> Result<Settings, String> {
    let settings = match config {
        Config::Kafka(c) => Settings::from_kafka(c),
        Config::EventHubsKafka(c) => Settings::from_event_hubs(c, None),
        other => {
            return Err(format!(
                "no raw client comparison for backend `{}`",
                other.backend_id()
            ))
        }
    }
    .map_err(|e| e.to_string())?;
    if settings.token_source.is_some() {
        return Err("the raw client comparison does not do OAUTHBEARER token refresh".into());
    }
    Ok(settings)
}

/// The raw client, connected once per benchmark like the evhub backend: one producer (warmed
/// with a metadata round trip, as `KafkaBackend::connect` does), consumers per run.
pub struct RawKafka {
    settings: Settings,
    producer: FutureProducer,
}

impl RawKafka {
    pub async fn connect(settings: Settings) -> evhub::Result<Self> {
        let producer: FutureProducer = settings
            .client_config(ClientKind::Producer)
            .create()
            .map_err(kafka_error("creating raw producer"))?;
        let (client, timeout) = (producer.clone(), settings.request_timeout);
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer as _;
            client.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|e| evhub::Error::new(evhub::ErrorKind::Other, e.to_string()))?
        .map_err(kafka_error("raw producer: fetching metadata"))?;
        Ok(Self { settings, producer })
    }
}

fn kafka_error(context: &str) -> impl Fn(KafkaError) -> evhub::Error + '_ {
    move |e| map_kafka_error(context, e)
}

/// Produces, consumes and measures latency on a fresh topic `hub`.
pub async fn run(
    raw: &RawKafka,
    admin: &Arc<dyn Backend>,
    w: &Workload,
    hub: &str,
    group: &str,
) -> evhub::Result<RunResult> {
    admin
        .create_hub(hub, HubOptions::with_partitions(w.partitions))
        .await?;
    let (settings, producer) = (&raw.settings, raw.producer.clone());

    // Produce phase: like evhub's send_batch, enqueue a batch then await its acknowledgements.
    let bar = progress::bar(w.events, "raw produce");
    let clock = Clock::start();
    let mut tasks = JoinSet::new();
    for i in 0..w.producers {
        let (from, to) = share(w.events, w.producers, i);
        let (producer, topic, size, batch, bar) = (
            producer.clone(),
            hub.to_owned(),
            w.size,
            w.batch,
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut seq = from;
            while seq < to {
                let end = (seq + batch).min(to);
                let payloads: Vec<Vec<u8>> = (seq..end).map(|s| payload(size, s)).collect();
                send_payloads(&producer, &topic, payloads).await?;
                bar.inc(end - seq);
                seq = end;
            }
            Ok(())
        });
    }
    within(w.phase_timeout, "raw produce phase", join_tasks(tasks)).await?;
    let produce = clock.phase(w.events, w.events * w.size as u64);
    bar.finish_and_clear();

    // Consume phase.
    let bar = progress::bar(w.events, "raw consume");
    let joining = Instant::now();
    let mut config = settings.client_config(ClientKind::GroupConsumer);
    config.set("group.id", group);
    config.set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = config
        .create()
        .map_err(kafka_error("creating raw consumer"))?;
    consumer
        .subscribe(&[hub])
        .map_err(kafka_error("subscribing raw consumer"))?;
    let first_len = within(w.phase_timeout, "first event", async {
        let m = consumer.recv().await.map_err(kafka_error("raw consumer"))?;
        Ok(m.payload_len())
    })
    .await?;
    let join_seconds = joining.elapsed().as_secs_f64();
    let clock = Clock::start();
    let consume_rest = async {
        let mut bytes = 0u64;
        for _ in 1..w.events {
            let m = consumer.recv().await.map_err(kafka_error("raw consumer"))?;
            let p = m.payload().unwrap_or_default();
            std::hint::black_box(decode(p));
            bytes += p.len() as u64;
            bar.inc(1);
        }
        Ok(bytes)
    };
    let bytes = within(w.phase_timeout, "raw consume phase", consume_rest).await?;
    let consume = clock.phase(w.events - 1, bytes);
    std::hint::black_box(first_len);
    bar.finish_and_clear();

    // Latency phase.
    let mut latencies = Latencies::default();
    if w.latency_events > 0 {
        let sender = tokio::spawn(paced_send(producer.clone(), hub.to_owned(), w.clone()));
        let receive = async {
            let mut lat = Vec::with_capacity(w.latency_events as usize);
            while (lat.len() as u64) < w.latency_events {
                let m = consumer.recv().await.map_err(kafka_error("raw consumer"))?;
                if let Some((ts, seq)) = m.payload().and_then(decode) {
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
    // Leaving the group blocks in librdkafka: not on a runtime worker.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    let consume_owned = consume_owned(settings, w, hub, &format!("{group}-owned")).await?;
    Ok(RunResult {
        produce,
        consume,
        join_seconds,
        latencies,
        consume_owned: Some(consume_owned),
        consume_batch: None,
    })
}

/// The backlog again, through a second group, copying each message into an owned
/// [`evhub::ReceivedEvent`] the way an owned-event API must (topic, key, payload, headers,
/// timestamp), on the reading task itself.
async fn consume_owned(
    settings: &Settings,
    w: &Workload,
    hub: &str,
    group: &str,
) -> evhub::Result<Phase> {
    let bar = progress::bar(w.events, "raw+copy consume");
    let mut config = settings.client_config(ClientKind::GroupConsumer);
    config.set("group.id", group);
    config.set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = config
        .create()
        .map_err(kafka_error("creating raw consumer"))?;
    consumer
        .subscribe(&[hub])
        .map_err(kafka_error("subscribing raw consumer"))?;
    within(w.phase_timeout, "first event", async {
        consumer.recv().await.map_err(kafka_error("raw consumer"))?;
        Ok(())
    })
    .await?;
    let clock = Clock::start();
    let read = async {
        let mut bytes = 0u64;
        for _ in 1..w.events {
            let m = consumer.recv().await.map_err(kafka_error("raw consumer"))?;
            let event = owned(&m);
            std::hint::black_box(decode(&event.payload));
            bytes += event.payload.len() as u64;
            bar.inc(1);
        }
        Ok(bytes)
    };
    let bytes = within(w.phase_timeout, "raw+copy consume phase", read).await?;
    let phase = clock.phase(w.events - 1, bytes);
    bar.finish_and_clear();
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    Ok(phase)
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> evhub::ReceivedEvent {
    use rdkafka::message::Headers as _;
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let value = h.value.map(evhub::Bytes::copy_from_slice);
                    (h.key.to_owned(), value.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    evhub::ReceivedEvent {
        hub: m.topic().into(),
        partition: u32::try_from(m.partition()).unwrap_or_default(),
        offset: m.offset(),
        service_offset: None,
        enqueued_at: m
            .timestamp()
            .to_millis()
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
        key: m.key().map(evhub::Bytes::copy_from_slice),
        payload: m
            .payload()
            .map(evhub::Bytes::copy_from_slice)
            .unwrap_or_default(),
        headers,
    }
}

/// Enqueues the payloads (librdkafka copies them), then waits for every acknowledgement.
async fn send_payloads(
    producer: &FutureProducer,
    topic: &str,
    payloads: Vec<Vec<u8>>,
) -> evhub::Result<()> {
    let mut deliveries = Vec::with_capacity(payloads.len());
    for payload in &payloads {
        deliveries.push(enqueue(producer, topic, payload).await?);
    }
    for delivery in futures::future::join_all(deliveries).await {
        match delivery {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(map_kafka_error("raw send", e)),
            Err(_canceled) => return Err(evhub::Error::closed("raw producer")),
        }
    }
    Ok(())
}

async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    payload: &[u8],
) -> evhub::Result<DeliveryFuture> {
    loop {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(payload);
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => return Err(map_kafka_error("raw send", e)),
        }
    }
}

async fn paced_send(producer: FutureProducer, topic: String, w: Workload) -> evhub::Result<()> {
    let (tick, per_tick) = pacing(w.latency_rate);
    let mut interval = tokio::time::interval(tick);
    let mut inflight = JoinSet::new();
    let (mut seq, end) = (w.events, w.events + w.latency_events);
    while seq < end {
        interval.tick().await;
        let next = (seq + per_tick).min(end);
        let payloads: Vec<Vec<u8>> = (seq..next).map(|s| payload(w.size, s)).collect();
        let (producer, topic) = (producer.clone(), topic.clone());
        inflight.spawn(async move { send_payloads(&producer, &topic, payloads).await });
        seq = next;
    }
    join_tasks(inflight).await
}
