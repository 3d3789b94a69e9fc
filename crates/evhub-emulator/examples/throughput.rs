//! Send + receive throughput of one Rust SDK client (azure_messaging_eventhubs)
//! against the emulator, with 1 KiB events.
//!
//! ```text
//! cargo run -p evhub-emulator --example throughput -- [EVENTS] [ENDPOINT CONNECTION_STRING]
//! ```
//! Without ENDPOINT it starts an in-process emulator. The hub needs partition "0".

// An example binary: failing loudly on setup errors is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use azure_messaging_eventhubs::{
    ConsumerClient, EventDataBatchOptions, OpenReceiverOptions, ProducerClient, StartLocation,
    StartPosition,
};
use evhub_emulator::Emulator;
use futures::StreamExt;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: usize = args.first().map(|a| a.parse().unwrap()).unwrap_or(5000);
    let (_emulator, endpoint, connection_string) = match (args.get(1), args.get(2)) {
        (Some(endpoint), Some(cs)) => (None, endpoint.clone(), cs.clone()),
        _ => {
            let emulator = Emulator::builder()
                .port(0)
                .hub("bench", 1)
                .start()
                .await
                .unwrap();
            let endpoint = emulator.endpoint();
            let cs = emulator.connection_string("bench");
            (Some(emulator), endpoint, cs)
        }
    };
    let producer = ProducerClient::builder()
        .with_custom_endpoint(endpoint.clone())
        .open_with_connection_string(&connection_string, None)
        .await
        .unwrap();
    let start_seq = producer
        .get_partition_properties("0")
        .await
        .unwrap()
        .last_enqueued_sequence_number;
    let body = vec![b'x'; 1024];

    let started = Instant::now();
    let mut sent = 0;
    while sent < events {
        let batch = producer
            .create_batch(Some(EventDataBatchOptions {
                partition_id: Some("0".into()),
                ..Default::default()
            }))
            .await
            .unwrap();
        while sent < events && batch.try_add_event_data(body.clone(), None).unwrap() {
            sent += 1;
        }
        producer.send_batch(batch, None).await.unwrap();
    }
    let send_time = started.elapsed();

    let consumer = ConsumerClient::builder()
        .with_custom_endpoint(endpoint)
        .open_with_connection_string(&connection_string, None)
        .await
        .unwrap();
    let receiver = consumer
        .open_receiver_on_partition(
            "0".into(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::SequenceNumber(start_seq),
                    inclusive: false,
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let started_receive = Instant::now();
    let mut stream = receiver.stream_events();
    let mut received = 0;
    while received < events {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("events keep arriving")
            .unwrap()
            .unwrap();
        assert_eq!(event.event_data().body().map(<[u8]>::len), Some(1024));
        received += 1;
    }
    let receive_time = started_receive.elapsed();
    let total = send_time + receive_time;
    println!(
        "rust-sdk events={events} send={:.0}/s receive={:.0}/s send+receive={:.0}/s",
        events as f64 / send_time.as_secs_f64(),
        events as f64 / receive_time.as_secs_f64(),
        events as f64 / total.as_secs_f64()
    );
}
