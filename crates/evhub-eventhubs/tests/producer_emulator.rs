//! Producer behaviour beyond the conformance suite: batches larger than the link's maximum
//! message size are split (order kept), and invalid events fail before anything is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use evhub_core::{ErrorKind, Event, ReaderOptions, StartPosition};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_the_link_limit_is_split_in_order() {
    let hub = unique("split-batch");
    common::create_hub(&hub, 1).unwrap();
    let backend = common::backend("memory").await.unwrap();
    // 12 events of 300 KiB: 3.6 MiB in one call, over three times the 1 MiB link limit.
    let events: Vec<Event> = (0..12u8)
        .map(|i| Event::new(vec![i; 300 * 1024]).with_header("i", vec![i]))
        .collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        let producer = backend.producer(&hub).await.unwrap();
        let deliveries = producer.send_batch(events).await.unwrap();
        assert_eq!(deliveries.len(), 12);
        let reader = backend
            .partition_reader(&hub, ReaderOptions::new(0, StartPosition::Earliest))
            .await
            .unwrap();
        for i in 0..12u8 {
            let event = reader.recv().await.unwrap();
            assert_eq!(event.payload.len(), 300 * 1024);
            assert!(
                event.payload.iter().all(|b| *b == i),
                "event {i} out of order"
            );
            assert_eq!(event.header("i").map(|v| v.to_vec()), Some(vec![i]));
        }
        let props = backend.partition_properties(&hub, 0).await.unwrap();
        assert_eq!(props.len(), 12);
    })
    .await
    .expect("split batch within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_fail_before_anything_is_sent() {
    let hub = unique("invalid");
    common::create_hub(&hub, 1).unwrap();
    let backend = common::backend("memory").await.unwrap();
    let producer = backend.producer(&hub).await.unwrap();
    let e = producer
        .send_batch(vec![
            Event::new("fine"),
            Event::new("binary key").with_key(vec![0xffu8, 0x00]),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = producer
        .send_batch(vec![
            Event::new("fine"),
            Event::new("dup")
                .with_header("h", "1")
                .with_header("h", "2"),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // Over the link's limit, and just under it: the limit is the encoded message size.
    let e = producer
        .send(Event::new(vec![0u8; 1024 * 1024]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    producer
        .send(Event::new(vec![0u8; 1024 * 1024 - 512]))
        .await
        .unwrap();
    let props = backend.partition_properties(&hub, 0).await.unwrap();
    assert_eq!(
        props.len(),
        1,
        "only the last send may be stored: {props:?}"
    );
    producer.close().await.unwrap();
    assert_eq!(
        producer.send(Event::new("late")).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
}

/// `max_event_bytes` is what the producer enforces: the sender link's advertised limit (here an
/// emulator that allows 64 KiB), not the Standard tier's fixed 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_reports_the_limit_the_producer_enforces() {
    use evhub_core::Backend;
    let emulator = evhub_emulator::Emulator::builder()
        .port(0)
        .key(
            "RootManageSharedAccessKey",
            "ZXZodWItZXZlbnRodWJzLXRlc3Qta2V5LW5vdC1hLXNlY3JldA==",
        )
        .hub("small", 1)
        .max_message_size(64 * 1024)
        .start()
        .await
        .unwrap();
    let proxy = common::latency_proxy(emulator.local_addr(), Duration::from_millis(3))
        .await
        .unwrap();
    let config = common::config_via(proxy, "memory");
    // config_via signs with the shared emulator's key; this one has the same key.
    let backend = evhub_eventhubs::EventHubsBackend::connect(&config)
        .await
        .unwrap();
    assert_eq!(
        backend.capabilities().max_event_bytes,
        evhub_eventhubs::STANDARD_MAX_EVENT_BYTES,
        "before any link"
    );
    let producer = backend.producer("small").await.unwrap();
    let limit = backend.capabilities().max_event_bytes;
    assert_eq!(limit, 64 * 1024, "the link's limit");
    // An event the capability allows is accepted; one beyond it is TooLarge.
    producer
        .send(Event::new(vec![1u8; limit / 2]))
        .await
        .unwrap();
    let e = producer
        .send(Event::new(vec![1u8; limit + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    producer.close().await.unwrap();
    emulator.shutdown().await;
}
