//! Throughput of the memory backend: N events of S bytes through one producer and one
//! consumer-group member, committing every 10 000 events (which is what frees room under the
//! default `block` overflow policy).
//!
//! `cargo run --release --example memory_throughput -- [events] [bytes]` (default 1 000 000 × 100)

use std::time::Instant;

use evhub::{ConsumerOptions, Event, Hub, HubOptions};

#[tokio::main]
async fn main() -> evhub::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let hub = Hub::from_url("memory://").await?;
    hub.create_hub("bench", HubOptions::with_partitions(1))
        .await?;
    let producer = hub.producer("bench").await?;
    let consumer = hub.consumer("bench", ConsumerOptions::new("bench")).await?;
    let payload = evhub::Bytes::from(vec![b'x'; size]);

    let started = Instant::now();
    let produce = tokio::spawn({
        let producer = producer.clone();
        async move {
            let batch = 1000;
            for chunk in (0..events).step_by(batch) {
                let n = batch.min(events - chunk);
                producer
                    .send_batch((0..n).map(|_| Event::new(payload.clone())).collect())
                    .await?;
            }
            Ok::<_, evhub::Error>(started.elapsed())
        }
    });
    let mut received = 0;
    while received < events {
        let event = consumer.recv().await?;
        received += 1;
        if received % 10_000 == 0 || received == events {
            consumer.commit(&event.checkpoint()).await?;
        }
    }
    let total = started.elapsed();
    let produce_time = produce
        .await
        .map_err(|e| evhub::Error::new(evhub::ErrorKind::Other, e.to_string()))??;
    let rate = |d: std::time::Duration| events as f64 / d.as_secs_f64();
    println!(
        "memory backend: {events} events x {size} B: produce {:.0} ev/s, end-to-end {:.0} ev/s ({:.1} MB/s), {:.2?} total",
        rate(produce_time),
        rate(total),
        rate(total) * size as f64 / 1e6,
        total
    );
    Ok(())
}
