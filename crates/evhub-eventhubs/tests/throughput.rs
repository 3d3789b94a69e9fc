//! Throughput of evhub-eventhubs against the raw `azure_messaging_eventhubs` SDK it wraps, on
//! the in-process emulator, in one run: send and receive of 1 KiB events.
//!
//! `cargo test --release -p evhub-eventhubs --test throughput -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use azure_messaging_eventhubs::{
    ConsumerClient, EventDataBatchOptions, OpenReceiverOptions, ProducerClient, StartLocation,
    StartPosition as SdkStart,
};
use evhub_core::{Backend, Event, ReaderOptions, StartPosition};
use evhub_eventhubs::EventHubsBackend;
use futures::StreamExt;

const EVENTS: usize = 20_000;
const CHUNK: usize = 500;
const SIZE: usize = 1024;

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn raw_sdk(hub: &str) -> (Duration, Duration) {
    let cs = common::direct_config("memory")
        .connection_string
        .unwrap()
        .expose()
        .replace(";EntityPath=unused", "");
    let endpoint = common::emulator().endpoint();
    let producer = ProducerClient::builder()
        .with_custom_endpoint(endpoint.clone())
        .open_with_connection_string(&cs, Some(hub))
        .await
        .unwrap();
    let payload = vec![b'x'; SIZE];
    let started = Instant::now();
    for chunk in 0..EVENTS / CHUNK {
        let batch = match producer
            .create_batch(Some(EventDataBatchOptions::default()))
            .await
        {
            Ok(batch) => batch,
            Err(e) => panic!("raw SDK create_batch failed in chunk {chunk}: {e}"),
        };
        for _ in 0..CHUNK {
            let data = azure_messaging_eventhubs::models::EventData::builder()
                .with_body(payload.clone())
                .build();
            if !batch.try_add_event_data(data.clone(), None).unwrap() {
                producer.send_batch(batch, None).await.unwrap();
                panic!("chunk {chunk} does not fit one batch; lower CHUNK");
            }
        }
        producer.send_batch(batch, None).await.unwrap();
    }
    let send = started.elapsed();
    // Closing fails against the emulator ("attach with a name that cannot be found locally");
    // the evhub producer logs and ignores the same error.
    let _ = producer.close().await;

    let consumer = ConsumerClient::builder()
        .with_custom_endpoint(endpoint)
        .open_with_connection_string(&cs, Some(hub))
        .await
        .unwrap();
    let receiver = consumer
        .open_receiver_on_partition(
            "0".into(),
            Some(OpenReceiverOptions {
                start_position: Some(SdkStart {
                    location: StartLocation::Earliest,
                    inclusive: false,
                }),
                prefetch: Some(300),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let started = Instant::now();
    {
        let mut stream = std::pin::pin!(receiver.stream_events());
        for _ in 0..EVENTS {
            let event = stream.next().await.unwrap().unwrap();
            assert_eq!(event.event_data().body().map(<[u8]>::len), Some(SIZE));
        }
    }
    let receive = started.elapsed();
    let _ = receiver.close().await;
    let _ = consumer.close().await;
    (send, receive)
}

async fn evhub(hub: &str) -> (Duration, Duration) {
    let backend = EventHubsBackend::connect(&common::direct_config("memory"))
        .await
        .unwrap();
    let producer = backend.producer(hub).await.unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; SIZE]);
    let started = Instant::now();
    for _ in 0..EVENTS / CHUNK {
        let events = (0..CHUNK).map(|_| Event::new(payload.clone())).collect();
        producer.send_batch(events).await.unwrap();
    }
    let send = started.elapsed();
    producer.close().await.unwrap();

    let reader = backend
        .partition_reader(hub, ReaderOptions::new(0, StartPosition::Earliest))
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..EVENTS {
        let event = reader.recv().await.unwrap();
        assert_eq!(event.payload.len(), SIZE);
    }
    let receive = started.elapsed();
    reader.close().await.unwrap();
    (send, receive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
async fn throughput_evhub_vs_raw_sdk() {
    const ROUNDS: usize = 4;
    let zero = Duration::ZERO;
    let (mut raw_send, mut raw_recv, mut ev_send, mut ev_recv) = (zero, zero, zero, zero);
    println!("{EVENTS} events of {SIZE} B per run, batches of {CHUNK}, 1 partition, in-process emulator, {ROUNDS} alternating rounds");
    for round in 0..ROUNDS {
        let raw_hub = format!("tp-raw-{round}");
        let evhub_hub = format!("tp-evhub-{round}");
        common::create_hub(&raw_hub, 1).unwrap();
        common::create_hub(&evhub_hub, 1).unwrap();
        // Alternate which side goes first so warm-up and emulator growth hit both equally.
        let ((rs, rr), (es, er)) = if round % 2 == 0 {
            let raw = raw_sdk(&raw_hub).await;
            (raw, evhub(&evhub_hub).await)
        } else {
            let ev = evhub(&evhub_hub).await;
            (raw_sdk(&raw_hub).await, ev)
        };
        println!(
            "round {round}: send raw {:.0} / evhub {:.0} ev/s; receive raw {:.0} / evhub {:.0} ev/s",
            rate(EVENTS, rs),
            rate(EVENTS, es),
            rate(EVENTS, rr),
            rate(EVENTS, er)
        );
        raw_send += rs;
        raw_recv += rr;
        ev_send += es;
        ev_recv += er;
    }
    let total = EVENTS * ROUNDS;
    let line = |what: &str, raw: Duration, ev: Duration| {
        println!(
            "{what:>8}: raw SDK {:>9.0} ev/s, evhub {:>9.0} ev/s, evhub/raw = {:.2}",
            rate(total, raw),
            rate(total, ev),
            raw.as_secs_f64() / ev.as_secs_f64()
        );
    };
    line("send", raw_send, ev_send);
    line("receive", raw_recv, ev_recv);
}
