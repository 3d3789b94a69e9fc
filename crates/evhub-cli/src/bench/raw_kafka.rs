//! The benchmark workload through raw rdkafka (`FutureProducer`, `StreamConsumer`), with the
//! exact librdkafka properties the evhub Kafka backend uses for the same configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::config::Config;
use evhub::{Backend, HubOptions};
use evhub_kafka::{map_kafka_error, ClientKind, Settings};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use indicatif::ProgressBar;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::future_producer::{DeliveryFuture, OwnedDeliveryResult};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;

use super::mirror::mirror_hub;
use super::stats::{decode, now_micros, payload, share, Clock, Latencies, Phase, RunResult};
use super::{join_one, join_tasks, pacing, within, Workload};
use crate::progress;

/// Description printed with the results.
pub const CLIENT: &str =
    "rdkafka FutureProducer + StreamConsumer, same librdkafka properties as evhub-kafka; \
mirror: StreamConsumer::recv -> FutureProducer::send_result (key, payload, headers copied), \
<= 100 000 in flight, delivered prefix committed every 500 ms";

/// Most messages the raw mirror has sent and not yet seen delivered (the evhub mirror's
/// `max_in_flight`).
const MIRROR_MAX_IN_FLIGHT: usize = evhub::pipeline::PipelineBuilder::DEFAULT_MAX_IN_FLIGHT;
/// How often the raw mirror commits what was delivered (the evhub pipeline's commit interval).
const MIRROR_COMMIT_INTERVAL: Duration = Duration::from_millis(500);

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

/// A raw group consumer (`what` names it in errors) of `group` subscribed to `hub`, starting
/// at the earliest offsets, with the properties evhub uses.
fn subscribe(
    settings: &Settings,
    hub: &str,
    group: &str,
    what: &str,
) -> evhub::Result<StreamConsumer> {
    let mut config = settings.client_config(ClientKind::GroupConsumer);
    config.set("group.id", group);
    config.set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = config
        .create()
        .map_err(|e| map_kafka_error(&format!("creating {what}"), e))?;
    consumer
        .subscribe(&[hub])
        .map_err(|e| map_kafka_error(&format!("subscribing {what}"), e))?;
    Ok(consumer)
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
    let consumer = subscribe(settings, hub, group, "raw consumer")?;
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

    // Mirror phase, while the topic holds exactly the produced events (the member above stays
    // joined, idle, for the latency phase; the evhub run does the same).
    let mirror = if w.mirror {
        Some(mirror(raw, admin, w, hub, &format!("{group}-mirror")).await?)
    } else {
        None
    };

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
        mirror,
    })
}

/// The `w.events` messages of `hub` mirrored into [`mirror_hub`] by hand, the way a careful
/// rdkafka user writes an at-least-once mirror: a group consumer (`group`, earliest) read with
/// `StreamConsumer::recv`; each message's key, payload and headers sent from the borrowed
/// message with the raw `FutureProducer` (`send_result`; partition not kept, like
/// `evhub pipe`), at most [`MIRROR_MAX_IN_FLIGHT`] unacknowledged; per partition only the
/// contiguous delivered prefix is committed, every [`MIRROR_COMMIT_INTERVAL`] (async) and at
/// the end (sync, untimed). Timed from the first message received to the last delivery.
async fn mirror(
    raw: &RawKafka,
    admin: &Arc<dyn Backend>,
    w: &Workload,
    hub: &str,
    group: &str,
) -> evhub::Result<Phase> {
    let target = mirror_hub(hub);
    admin
        .create_hub(&target, HubOptions::with_partitions(w.partitions))
        .await?;
    let consumer = subscribe(&raw.settings, hub, group, "raw mirror consumer")?;
    let bar = progress::bar(w.events, "raw mirror");
    let mut progress = Progress::default();
    let mirrored = async {
        let first = within(w.phase_timeout, "raw mirror: first event", async {
            consumer
                .recv()
                .await
                .map_err(kafka_error("raw mirror consumer"))
        })
        .await?;
        let clock = Clock::start();
        let copy = mirror_messages(
            &consumer,
            &raw.producer,
            (hub, &target),
            first,
            w.events,
            &mut progress,
            &bar,
        );
        let bytes = within(w.phase_timeout, "raw mirror phase", copy).await?;
        Ok(clock.phase(w.events, bytes))
    };
    let phase: evhub::Result<Phase> = mirrored.await;
    bar.finish_and_clear();
    // The final commit and leaving the group block in librdkafka: not on a runtime worker.
    let source = hub.to_owned();
    let committed = tokio::task::spawn_blocking(move || {
        let committed = match phase {
            Ok(_) => commit(&consumer, &source, &mut progress, CommitMode::Sync),
            Err(_) => Ok(()),
        };
        drop(consumer);
        committed.and(phase)
    })
    .await
    .map_err(super::task_failed)?;
    committed
}

/// The mirror loop: forwards `first` and what follows until `events` messages are delivered;
/// returns the payload bytes forwarded.
async fn mirror_messages(
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    (source, target): (&str, &str),
    first: BorrowedMessage<'_>,
    events: u64,
    progress: &mut Progress,
    bar: &ProgressBar,
) -> evhub::Result<u64> {
    let mut deliveries = FuturesUnordered::new();
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    let mut commit_every = tokio::time::interval_at(
        tokio::time::Instant::now() + MIRROR_COMMIT_INTERVAL,
        MIRROR_COMMIT_INTERVAL,
    );
    commit_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = Some(first);
    loop {
        if let Some(m) = next.take() {
            let (partition, offset) = (m.partition(), m.offset());
            progress.received(partition, offset);
            bytes += m.payload_len() as u64;
            let mut record = forwarded(target, &m);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery.map(move |result| (partition, offset, result)));
                        break;
                    }
                    // librdkafka's queue is full: make room by waiting for a delivery.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        match deliveries.next().await {
                            Some(done) => {
                                settle(done, progress)?;
                                delivered += 1;
                                bar.inc(1);
                            }
                            None => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    Err((e, _)) => return Err(map_kafka_error("raw mirror: send", e)),
                }
            }
        }
        if delivered >= events {
            return Ok(bytes);
        }
        tokio::select! {
            biased;
            _ = commit_every.tick() => commit(consumer, source, progress, CommitMode::Async)?,
            Some(done) = deliveries.next() => {
                settle(done, progress)?;
                delivered += 1;
                // Every delivery that is already in, without going through `select!` again.
                while let Some(Some(done)) = deliveries.next().now_or_never() {
                    settle(done, progress)?;
                    delivered += 1;
                }
                bar.set_position(delivered);
            }
            m = consumer.recv(), if deliveries.len() < MIRROR_MAX_IN_FLIGHT => {
                next = Some(m.map_err(kafka_error("raw mirror consumer"))?);
            }
        }
    }
}

/// The record that copies `m` (key, payload, headers) to `target`; librdkafka places it.
fn forwarded<'a>(target: &'a str, m: &'a BorrowedMessage<'_>) -> FutureRecord<'a, [u8], [u8]> {
    let mut record = FutureRecord::to(target);
    if let Some(payload) = m.payload() {
        record = record.payload(payload);
    }
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    if let Some(headers) = m.headers() {
        record = record.headers(headers.detach());
    }
    record
}

/// Records the outcome of one send; a failed delivery (after librdkafka's own retries) ends
/// the mirror.
fn settle(
    (partition, offset, result): (
        i32,
        i64,
        Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
    ),
    progress: &mut Progress,
) -> evhub::Result<()> {
    match result {
        Ok(Ok(_)) => {
            progress.delivered(partition, offset);
            Ok(())
        }
        Ok(Err((e, _))) => Err(map_kafka_error("raw mirror: delivery", e)),
        Err(_canceled) => Err(evhub::Error::closed("raw producer")),
    }
}

/// Commits the delivered prefix of every partition that advanced since the last commit.
fn commit(
    consumer: &StreamConsumer,
    topic: &str,
    progress: &mut Progress,
    mode: CommitMode,
) -> evhub::Result<()> {
    let positions = progress.uncommitted();
    if positions.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::with_capacity(positions.len());
    for &(partition, offset) in &positions {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(kafka_error("raw mirror: commit"))?;
    }
    consumer
        .commit(&list, mode)
        .map_err(kafka_error("raw mirror: commit"))?;
    progress.committed(&positions);
    Ok(())
}

/// What the raw mirror may commit: per source partition, the offsets received and whether
/// each was delivered; every offset below the lowest undelivered one is done.
#[derive(Debug, Default)]
struct Progress {
    partitions: HashMap<i32, PartitionProgress>,
}

#[derive(Debug, Default)]
struct PartitionProgress {
    /// Received offsets not yet part of the delivered prefix, and whether each was delivered.
    pending: BTreeMap<i64, bool>,
    /// The next offset to read after a restart: every offset below it was delivered.
    done_below: Option<i64>,
    /// The position last committed.
    committed: Option<i64>,
}

impl Progress {
    fn received(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .pending
            .entry(offset)
            .or_insert(false);
    }

    fn delivered(&mut self, partition: i32, offset: i64) {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        if let Some(done) = p.pending.get_mut(&offset) {
            *done = true;
        }
        while let Some(entry) = p.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            let (offset, _) = entry.remove_entry();
            p.done_below = Some(p.done_below.map_or(offset + 1, |d| d.max(offset + 1)));
        }
    }

    /// `(partition, position)` of the partitions whose delivered prefix grew since the last
    /// commit, by partition.
    fn uncommitted(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(&partition, p)| {
                let done = p.done_below?;
                p.committed
                    .is_none_or(|c| done > c)
                    .then_some((partition, done))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn committed(&mut self, positions: &[(i32, i64)]) {
        for &(partition, offset) in positions {
            if let Some(p) = self.partitions.get_mut(&partition) {
                p.committed = Some(offset);
            }
        }
    }
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
    let consumer = subscribe(settings, hub, group, "raw consumer")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_delivered_prefix_per_partition() {
        let mut progress = Progress::default();
        for offset in 10..15 {
            progress.received(0, offset);
        }
        progress.received(1, 0);
        assert!(progress.uncommitted().is_empty());
        // 11 and 12 delivered before 10: nothing of partition 0 may be committed yet.
        progress.delivered(0, 11);
        progress.delivered(0, 12);
        progress.delivered(1, 0);
        assert_eq!(progress.uncommitted(), [(1, 1)]);
        progress.committed(&[(1, 1)]);
        assert!(progress.uncommitted().is_empty());
        progress.delivered(0, 10);
        assert_eq!(progress.uncommitted(), [(0, 13)]);
        progress.committed(&[(0, 13)]);
        // 14 delivered, 13 not: the position stays at 13.
        progress.delivered(0, 14);
        assert!(progress.uncommitted().is_empty());
        progress.delivered(0, 13);
        assert_eq!(progress.uncommitted(), [(0, 15)]);
        // A delivery of an offset never received (or already past) changes nothing.
        progress.delivered(0, 3);
        progress.delivered(7, 0);
        assert_eq!(progress.uncommitted(), [(0, 15)]);
    }

    #[test]
    fn a_rewound_partition_never_moves_the_position_back() {
        let mut progress = Progress::default();
        progress.received(0, 5);
        progress.delivered(0, 5);
        progress.committed(&progress.uncommitted());
        // Read again from 3 (a rebalance before the commit reached the broker).
        progress.received(0, 3);
        progress.delivered(0, 3);
        assert!(progress.uncommitted().is_empty());
        progress.received(0, 6);
        progress.delivered(0, 6);
        assert_eq!(progress.uncommitted(), [(0, 7)]);
    }
}
