//! Throughput of the memory backend: N events of S bytes through one producer (`send_batch`)
//! and one consumer-group member (`recv_batch`), committing after every batch (which is what
//! frees room under the default `block` overflow policy). Prints produce-only, consume-only
//! and end-to-end rates.
//!
//! `cargo run --release --example memory_throughput -- [events] [bytes]` (default 1 000 000 × 100)

use std::time::{Duration, Instant};

use evhub::{ConsumerOptions, Event, Hub, HubOptions};

#[tokio::main]
async fn main() -> evhub::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    // Room for every event at once, so the produce-only phase never waits for commits.
    let hub = Hub::from_url(&format!("memory://?partition_capacity={}", events.max(1))).await?;
    hub.create_hub("bench", HubOptions::with_partitions(1))
        .await?;
    let producer = hub.producer("bench").await?;
    let consumer = hub.consumer("bench", ConsumerOptions::new("bench")).await?;
    let payload = evhub::Bytes::from(vec![b'x'; size]);

    // Phase 1: produce only (the partition holds every event: capacity is raised below).
    let started = Instant::now();
    let batch = 1000;
    for chunk in (0..events).step_by(batch) {
        let n = batch.min(events - chunk);
        producer
            .send_batch((0..n).map(|_| Event::new(payload.clone())).collect())
            .await?;
    }
    let produce_time = started.elapsed();

    // Phase 2: consume only, in batches, committing each batch.
    let started = Instant::now();
    let mut received = 0;
    while received < events {
        let got = consumer.recv_batch(batch, Duration::from_secs(5)).await?;
        let Some(last) = got.last() else {
            return Err(evhub::Error::timeout("no event within 5 s"));
        };
        received += got.len();
        consumer.commit(&last.checkpoint()).await?;
    }
    let consume_time = started.elapsed();

    // Phase 3: both at once, end to end.
    let started = Instant::now();
    let produce = tokio::spawn({
        let producer = producer.clone();
        let payload = payload.clone();
        async move {
            for chunk in (0..events).step_by(batch) {
                let n = batch.min(events - chunk);
                producer
                    .send_batch((0..n).map(|_| Event::new(payload.clone())).collect())
                    .await?;
            }
            Ok::<_, evhub::Error>(())
        }
    });
    let mut received = 0;
    while received < events {
        let got = consumer.recv_batch(batch, Duration::from_secs(5)).await?;
        let Some(last) = got.last() else {
            return Err(evhub::Error::timeout("no event within 5 s"));
        };
        received += got.len();
        consumer.commit(&last.checkpoint()).await?;
    }
    let total = started.elapsed();
    produce
        .await
        .map_err(|e| evhub::Error::new(evhub::ErrorKind::Other, e.to_string()))??;
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!(
        "memory backend: {events} events x {size} B: produce (send_batch) {:.0} ev/s, consume (recv_batch) {:.0} ev/s, end-to-end {:.0} ev/s ({:.1} MB/s)",
        rate(produce_time),
        rate(consume_time),
        rate(total),
        rate(total) * size as f64 / 1e6,
    );
    Ok(())
}
