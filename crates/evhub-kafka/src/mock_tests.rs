//! Fast unit tests on librdkafka's in-process mock cluster (no broker needed). The real-broker
//! suite in `tests/` is what proves the backend; these pin the error paths that a real broker
//! hardly ever produces on demand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use evhub_core::config::KafkaConfig;
use evhub_core::{Backend, ErrorKind, Event, ReaderOptions, StartPosition};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::KafkaBackend;

async fn backend(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
) -> KafkaBackend {
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.request_timeout_ms = 5_000;
    KafkaBackend::connect(&config)
        .await
        .expect("connect to mock cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_read_and_watermarks_on_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("mock-hub", 2, 1).unwrap();
    let backend = backend(&cluster).await;
    let producer = backend.producer("mock-hub").await.unwrap();
    let delivery = producer
        .send(Event::new("hello").with_partition(1).with_header("h", "v"))
        .await
        .unwrap();
    assert_eq!((delivery.partition, delivery.offset), (Some(1), Some(0)));
    let props = backend.partition_properties("mock-hub", 1).await.unwrap();
    assert_eq!((props.begin_offset, props.end_offset), (0, 1));
    let reader = backend
        .partition_reader("mock-hub", ReaderOptions::new(1, StartPosition::Earliest))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), reader.recv())
        .await
        .expect("read within 10 s")
        .unwrap();
    assert_eq!(&event.payload[..], b"hello");
    assert_eq!(event.header("h").map(|v| &v[..]), Some(&b"v"[..]));
    let err = backend
        .partition_properties("mock-hub", 2)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_on_produce_map_to_kinds() {
    let cluster = MockCluster::new(1).unwrap();
    let backend_for = |topic: &'static str| {
        cluster.create_topic(topic, 1, 1).unwrap();
        topic
    };
    // One topic per code: librdkafka remembers an authorization failure per topic.
    let cases = [
        (
            backend_for("mock-auth"),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            ErrorKind::Auth,
        ),
        (
            backend_for("mock-size"),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            ErrorKind::TooLarge,
        ),
    ];
    let backend = backend(&cluster).await;
    for (topic, code, kind) in cases {
        let producer = backend.producer(topic).await.unwrap();
        producer.send(Event::new("warm-up")).await.unwrap();
        cluster.request_errors(RDKafkaApiKey::Produce, &[code]);
        let err = producer.send(Event::new("x")).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{code:?}: {err}");
        assert!(!err.is_retriable(), "{code:?}");
        cluster.clear_request_errors(RDKafkaApiKey::Produce);
    }
    let producer = backend.producer("mock-size").await.unwrap();
    producer.send(Event::new("after")).await.unwrap();
}

/// `close()` returns within its bound when the broker is gone (the mock broker on 127.0.0.1 is
/// taken down), and the member reports `Closed` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_in_bounded_time_when_the_broker_is_gone() {
    use evhub_core::ConsumerOptions;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("mock-close", 2, 1).unwrap();
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.request_timeout_ms = 30_000;
    let backend = KafkaBackend::connect(&config).await.unwrap();
    let producer = backend.producer("mock-close").await.unwrap();
    producer
        .send_batch((0..10).map(|i| Event::new(format!("e{i}"))).collect())
        .await
        .unwrap();
    let consumer = backend
        .consumer("mock-close", ConsumerOptions::new("mock-close-g"))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("an event within 30 s")
        .unwrap();
    assert!(consumer
        .commit(&event.checkpoint())
        .await
        .unwrap()
        .is_committed());
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(
        crate::CLOSE_TIMEOUT + Duration::from_secs(5),
        consumer.close(),
    )
    .await
    .expect("close did not return within its bound")
    .unwrap();
    assert!(started.elapsed() <= crate::CLOSE_TIMEOUT + Duration::from_secs(2));
    let err = consumer.recv().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
}
