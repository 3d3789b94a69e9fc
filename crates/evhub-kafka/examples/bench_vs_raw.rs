//! Produce and consume throughput of evhub-kafka against raw rdkafka, on the same broker in
//! the same run, with 100-byte events. Prints rates and the evhub/raw ratios.
//!
//! ```text
//! eval "$(scripts/kafka.sh env)"
//! cargo run --release -p evhub-kafka --example bench_vs_raw -- [events]
//! ```
//! Uses `EVHUB_TEST_KAFKA_BOOTSTRAP` (default 127.0.0.1:19092). Both sides use the librdkafka
//! configuration evhub builds (acks=all, idempotence, murmur2 partitioner), so the ratio shows
//! the cost of the evhub layer, not of different settings.

use std::time::{Duration, Instant};

use evhub_core::config::KafkaConfig;
use evhub_core::{Backend, ConsumerOptions, Event, HubOptions};
use evhub_kafka::rdkafka::consumer::{Consumer as _, StreamConsumer};
use evhub_kafka::rdkafka::message::Message;
use evhub_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use evhub_kafka::{ClientKind, KafkaBackend, Settings};
use futures::future::join_all;

const CHUNK: usize = 10_000;
/// Rounds per measurement; the median ratio is reported (the machine is shared and noisy).
const ROUNDS: usize = 5;
const PAYLOAD: [u8; 100] = [b'x'; 100];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn raw_produce(producer: &FutureProducer, topic: &str, n: usize) -> Res<Duration> {
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let chunk = left.min(CHUNK);
        let mut futures = Vec::with_capacity(chunk);
        for i in 0..chunk {
            let key = format!("k{}", i % 64);
            let mut record = FutureRecord::to(topic)
                .payload(&PAYLOAD[..])
                .key(key.as_str());
            loop {
                match producer.send_result(record) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((e, returned)) => {
                        record = returned;
                        if e.rdkafka_error_code()
                            != Some(evhub_kafka::rdkafka::types::RDKafkaErrorCode::QueueFull)
                        {
                            return Err(e.into());
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        }
        for r in join_all(futures).await {
            r?.map_err(|(e, _)| e)?;
        }
        left -= chunk;
    }
    Ok(started.elapsed())
}

async fn evhub_produce(backend: &KafkaBackend, topic: &str, n: usize) -> Res<Duration> {
    let producer = backend.producer(topic).await?;
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let chunk = left.min(CHUNK);
        let events = (0..chunk)
            .map(|i| Event::new(&PAYLOAD[..]).with_key(format!("k{}", i % 64)))
            .collect();
        producer.send_batch(events).await?;
        left -= chunk;
    }
    Ok(started.elapsed())
}

/// Time from the first to the n-th message (group join excluded). With `owned`, each message
/// is copied out (`detach`), as an API of owned events must.
async fn raw_consume(
    settings: &Settings,
    topic: &str,
    group: &str,
    n: usize,
    owned: bool,
) -> Res<Duration> {
    let mut config = settings.client_config(ClientKind::GroupConsumer);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let first = consumer.recv().await?;
    let mut bytes = first.payload().map_or(0, <[u8]>::len);
    drop(first);
    let started = Instant::now();
    for _ in 1..n {
        let m = consumer.recv().await?;
        if owned {
            let m = m.detach();
            bytes += m.payload().map_or(0, <[u8]>::len);
        } else {
            bytes += m.payload().map_or(0, <[u8]>::len);
        }
    }
    let took = started.elapsed();
    assert_eq!(bytes, n * PAYLOAD.len());
    Ok(took)
}

async fn evhub_consume(
    backend: &KafkaBackend,
    topic: &str,
    group: &str,
    n: usize,
) -> Res<Duration> {
    let consumer = backend.consumer(topic, ConsumerOptions::new(group)).await?;
    let mut bytes = consumer.recv().await?.payload.len();
    let started = Instant::now();
    for _ in 1..n {
        bytes += consumer.recv().await?.payload.len();
    }
    let took = started.elapsed();
    assert_eq!(bytes, n * PAYLOAD.len());
    consumer.close().await?;
    Ok(took)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> Res<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let bootstrap =
        std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let config = KafkaConfig::new(bootstrap);
    let settings = Settings::from_kafka(&config)?;
    let backend = KafkaBackend::connect(&config).await?;
    let raw: FutureProducer = settings.client_config(ClientKind::Producer).create()?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (raw_topic, evhub_topic) = (
        format!("bench-raw-{suffix}"),
        format!("bench-evhub-{suffix}"),
    );
    for t in [&raw_topic, &evhub_topic] {
        backend
            .create_hub(t, HubOptions::with_partitions(4))
            .await?;
    }
    // Warm-up: connections, metadata, producer id.
    raw_produce(&raw, &raw_topic, 1_000).await?;
    evhub_produce(&backend, &evhub_topic, 1_000).await?;

    println!(
        "{n} events of {} bytes, 4 partitions, chunks of {CHUNK}",
        PAYLOAD.len()
    );
    let mut produce = Vec::new();
    for round in 1..=ROUNDS {
        let r = raw_produce(&raw, &raw_topic, n).await?;
        let e = evhub_produce(&backend, &evhub_topic, n).await?;
        println!(
            "produce round {round}: raw {:>9.0}/s  evhub {:>9.0}/s  ratio {:.2}",
            rate(n, r),
            rate(n, e),
            rate(n, e) / rate(n, r)
        );
        produce.push(rate(n, e) / rate(n, r));
    }
    // The raw topic now holds 2n + 1000 events; every reader consumes n of them from it.
    let mut consume = Vec::new();
    let mut consume_owned = Vec::new();
    for round in 1..=ROUNDS {
        let r = raw_consume(
            &settings,
            &raw_topic,
            &format!("raw-{round}-{suffix}"),
            n,
            false,
        )
        .await?;
        let o = raw_consume(
            &settings,
            &raw_topic,
            &format!("owned-{round}-{suffix}"),
            n,
            true,
        )
        .await?;
        let e = evhub_consume(&backend, &raw_topic, &format!("evhub-{round}-{suffix}"), n).await?;
        println!(
            "consume round {round}: raw {:>9.0}/s  raw+detach {:>9.0}/s  evhub {:>9.0}/s  ratio {:.2} (vs raw+detach {:.2})",
            rate(n, r),
            rate(n, o),
            rate(n, e),
            rate(n, e) / rate(n, r),
            rate(n, e) / rate(n, o)
        );
        consume.push(rate(n, e) / rate(n, r));
        consume_owned.push(rate(n, e) / rate(n, o));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "evhub/raw throughput ratio (median of {ROUNDS}): produce {:.2}, consume {:.2} (vs raw with detach: {:.2})",
        median(&mut produce),
        median(&mut consume),
        median(&mut consume_owned)
    );
    Ok(())
}
