//! A poison event: an event whose body nests AMQP values thousands of
//! levels deep (about 3 bytes per level, so ~9 KB). Anyone with Send rights
//! on a hub can publish one. The AMQP decoder under the Azure SDK
//! (`serde_amqp`, via `fe2o3-amqp` and `azure_core_amqp`) decodes
//! recursively: unpatched, one such event overflows the consumer's stack and
//! aborts the whole process, so the checkpoint never moves past it.
//!
//! The workspace carries a patched `serde_amqp` with a nesting limit
//! (`patches/serde_amqp`, see `patches/README.md`), which turns that abort
//! into a decode error. These tests publish a poison event between two normal
//! ones through the emulator (which keeps bodies opaque, as the service does)
//! and require the `eventhubs` backend's partition reader and group consumer
//! to survive it: the process stays up, the poison event comes back either
//! as raw bytes or as an error for that event, and the event after it is
//! delivered.
//!
//! With the patch the process survives (`poison_event_is_an_error_not_an_abort`),
//! and the backend moves past the event: the partition reader and the group
//! consumer report one `Protocol` error for it, reopen the receiver after its
//! sequence number and deliver the next event (`*_moves_past_*`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use evhub_core::{
    config::EventHubsConfig, Backend, ConsumerOptions, Event, InitialPosition, ReaderOptions,
    StartPosition,
};
use evhub_emulator::{Emulator, EmulatorHandle};
use evhub_eventhubs::EventHubsBackend;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Nesting of the poison body: far past any stack in debug and release.
const POISON_LEVELS: usize = 5_000;
const KEY: &str = "ZXZodWItZXZlbnRodWJzLXRlc3Qta2V5LW5vdC1hLXNlY3JldA==";

async fn start_emulator() -> EmulatorHandle {
    Emulator::builder()
        .port(0)
        .key("RootManageSharedAccessKey", KEY)
        // The raw publisher below does not authenticate.
        .no_auth(true)
        .start()
        .await
        .expect("emulator starts")
}

async fn backend_for(emulator: &EmulatorHandle) -> EventHubsBackend {
    let proxy = common::latency_proxy(emulator.local_addr(), Duration::from_millis(3))
        .await
        .unwrap();
    let cs = evhub_emulator::connection_string("127.0.0.1", proxy.port(), emulator.key(), "unused")
        .parse()
        .unwrap();
    let mut config = EventHubsConfig::from_connection_string(cs);
    config.checkpoint_store = Some("memory://poison".to_owned());
    config.operation_timeout_ms = 30_000;
    common::fast_balancing(&mut config);
    EventHubsBackend::connect(&config).await.unwrap()
}

fn frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[2, frame_type, 0, 0]);
    out.extend_from_slice(body);
    out
}

fn described_list(code: u8, fields: &[&[u8]]) -> Vec<u8> {
    let elements: Vec<u8> = fields.concat();
    let mut out = vec![0x00, 0x53, code, 0xd0];
    out.extend_from_slice(&((elements.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    out.extend_from_slice(&elements);
    out
}

fn str8(text: &str) -> Vec<u8> {
    let mut out = vec![0xa1, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// amqp-value body: a list holding `levels` nested described values.
fn poison_message(levels: usize) -> Vec<u8> {
    let mut nested = Vec::with_capacity(levels * 3 + 1);
    for _ in 0..levels {
        nested.extend_from_slice(&[0x00, 0x53, 0x01]);
    }
    nested.push(0x40);
    let mut list = vec![0xd0];
    list.extend_from_slice(&((nested.len() + 4) as u32).to_be_bytes());
    list.extend_from_slice(&1u32.to_be_bytes());
    list.extend_from_slice(&nested);
    let mut message = vec![0x00, 0x53, 0x77];
    message.extend_from_slice(&list);
    message
}

async fn read_some(stream: &mut TcpStream, received: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
        received.extend_from_slice(&chunk[..n]);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Publishes `message` to `hub` partition 0 with hand-written frames (a raw
/// AMQP client, as an attacker would use) and waits for `accepted`.
async fn publish_raw(emulator: &EmulatorHandle, hub: &str, message: &[u8]) {
    let mut stream = TcpStream::connect(emulator.local_addr()).await.unwrap();
    let mut received = Vec::new();
    stream.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
    let mut init = vec![0x00, 0x53, 0x41, 0xc0, 0x0c, 0x01, 0xa3, 0x09];
    init.extend_from_slice(b"ANONYMOUS");
    stream.write_all(&frame(1, &init)).await.unwrap();
    stream.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let open = described_list(0x10, &[&str8("poisoner")]);
    stream.write_all(&frame(0, &open)).await.unwrap();
    let window = [0x70, 0x00, 0x00, 0xff, 0xff];
    let begin = described_list(0x11, &[&[0x40], &[0x43], &window, &window]);
    stream.write_all(&frame(0, &begin)).await.unwrap();
    let address = format!("{hub}/Partitions/0");
    let source = [0x00, 0x53, 0x28, 0x45];
    let target = described_list(0x29, &[&str8(&address)]);
    let attach = described_list(
        0x12,
        &[
            &str8("poison-link"),
            &[0x43],
            &[0x42],
            &[0x40],
            &[0x40],
            &source,
            &target,
            &[0x40],
            &[0x40],
            &[0x43],
        ],
    );
    stream.write_all(&frame(0, &attach)).await.unwrap();
    // Wait for the flow that grants credit.
    while !contains(&received, &[0x00, 0x53, 0x13]) {
        let before = received.len();
        read_some(&mut stream, &mut received).await;
        assert!(
            received.len() > before,
            "no flow from the emulator: {received:?}"
        );
    }
    let mut transfer = described_list(
        0x14,
        &[
            &[0x43],
            &[0x43],
            &[0xa0, 0x01, 0x01],
            &[0x43],
            &[0x42],
            &[0x42],
        ],
    );
    transfer.extend_from_slice(message);
    stream.write_all(&frame(0, &transfer)).await.unwrap();
    // Disposition with the accepted outcome (0x24).
    while !contains(&received, &[0x00, 0x53, 0x24]) {
        let before = received.len();
        read_some(&mut stream, &mut received).await;
        assert!(
            received.len() > before,
            "the emulator did not accept the event: {received:?}"
        );
    }
}

async fn publish_poison_between(backend: &EventHubsBackend, emulator: &EmulatorHandle, hub: &str) {
    emulator.create_hub(hub, 1).unwrap();
    let producer = backend.producer(hub).await.unwrap();
    producer
        .send(Event::new("before").with_partition(0))
        .await
        .unwrap();
    publish_raw(emulator, hub, &poison_message(POISON_LEVELS)).await;
    producer
        .send(Event::new("after").with_partition(0))
        .await
        .unwrap();
}

/// Reads with `recv` until "after" arrives; the poison event in between may
/// come as any payload or as errors, but "after" must come.
async fn survives(what: &str, mut recv: impl AsyncFnMut() -> evhub_core::Result<bytes::Bytes>) {
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match recv().await {
                Ok(payload) if payload.as_ref() == b"after" => return,
                Ok(payload) => seen.push(payload.len()),
                Err(error) => {
                    errors.push(error.to_string());
                    if errors.len() > 20 {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok() && errors.len() <= 20,
        "{what}: the event after the poison event never arrived; payload sizes seen {seen:?}, \
         errors {errors:?}"
    );
    eprintln!("{what}: survived the poison event; payload sizes {seen:?}, errors {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_an_error_not_an_abort() {
    let emulator = start_emulator().await;
    let backend = backend_for(&emulator).await;
    publish_poison_between(&backend, &emulator, "poison-error").await;
    let reader = backend
        .partition_reader(
            "poison-error",
            ReaderOptions::new(0, StartPosition::Earliest),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        let first = reader.recv().await.unwrap();
        assert_eq!(first.payload.as_ref(), b"before");
        // Unpatched, decoding the next event overflows the stack and aborts
        // this test process. Patched, it is an error (or, once the backend
        // passes bodies through, the raw event).
        match reader.recv().await {
            Err(error) => assert!(
                error.to_string().contains("Decoding"),
                "unexpected error: {error}"
            ),
            Ok(event) => assert_ne!(event.payload.as_ref(), b"before"),
        }
    })
    .await
    .expect("the reader answers within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_reader_moves_past_a_poison_event() {
    let emulator = start_emulator().await;
    let backend = backend_for(&emulator).await;
    publish_poison_between(&backend, &emulator, "poison-reader").await;
    let reader = backend
        .partition_reader(
            "poison-reader",
            ReaderOptions::new(0, StartPosition::Earliest),
        )
        .await
        .unwrap();
    survives("partition reader", async || {
        reader.recv().await.map(|e| e.payload)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_consumer_moves_past_a_poison_event() {
    let emulator = start_emulator().await;
    let backend = backend_for(&emulator).await;
    publish_poison_between(&backend, &emulator, "poison-group").await;
    let consumer = backend
        .consumer(
            "poison-group",
            ConsumerOptions::new("$Default").with_initial_position(InitialPosition::Earliest),
        )
        .await
        .unwrap();
    survives("group consumer", async || {
        consumer.recv().await.map(|e| e.payload)
    })
    .await;
}
