#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use evhub_core::config::KafkaConfig;
use evhub_core::{Backend, Event, HubOptions};
use rdkafka::consumer::BaseConsumer;

use super::*;
use crate::KafkaBackend;

/// A checkpoint the application committed but the broker had not confirmed yet when the
/// partition was revoked is committed by the revocation callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_commits_pending_checkpoints() {
    let Ok(bootstrap) = std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "revocation_commits_pending_checkpoints: skipped: no Kafka broker; run scripts/test.sh"
        );
        return;
    };
    let mut config = KafkaConfig::new(bootstrap);
    config.session_timeout_ms = Some(6_000);
    let backend = KafkaBackend::connect(&config).await.unwrap();
    let cluster = Cluster::connect(backend.settings().clone()).await.unwrap();
    let hub = format!("evhub-revoke-{}", uuid::Uuid::new_v4().simple());
    backend
        .create_hub(&hub, HubOptions::with_partitions(1))
        .await
        .unwrap();
    let events = (0..10).map(|i| Event::new(format!("e{i}"))).collect();
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send_batch(events)
        .await
        .unwrap();
    let group = format!("evhub-revoke-g-{}", uuid::Uuid::new_v4().simple());
    let a = KafkaConsumer::join(cluster.clone(), &hub, ConsumerOptions::new(&group))
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(30), a.recv())
            .await
            .unwrap()
            .unwrap();
    }
    // As if `commit` of offset 5 had been called and its broker round trip not yet run.
    a.group.add_pending(0, 6);
    let revision = a.group.revision();
    let b = KafkaConsumer::join(cluster.clone(), &hub, ConsumerOptions::new(&group))
        .await
        .unwrap();
    // Joining b makes the group rebalance: a's partition is revoked (and maybe reassigned).
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.group.revision() == revision {
        assert!(Instant::now() < deadline, "no rebalance within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        a.group.take_pending(None).is_empty(),
        "pending checkpoint left behind"
    );
    let probe: BaseConsumer = backend
        .settings()
        .client_config(ClientKind::Reader)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(&hub, 0);
    let committed = blocking(move || probe.committed_offsets(list, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let offset = committed.find_partition(&hub, 0).unwrap().offset();
    assert_eq!(offset, Offset::Offset(6));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// `close()` commits checkpoints still in flight before leaving the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_checkpoints_in_flight() {
    let Ok(bootstrap) = std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "close_commits_checkpoints_in_flight: skipped: no Kafka broker; run scripts/test.sh"
        );
        return;
    };
    let mut config = KafkaConfig::new(bootstrap);
    config.session_timeout_ms = Some(6_000);
    let backend = KafkaBackend::connect(&config).await.unwrap();
    let cluster = Cluster::connect(backend.settings().clone()).await.unwrap();
    let hub = format!("evhub-close-{}", uuid::Uuid::new_v4().simple());
    backend
        .create_hub(&hub, HubOptions::with_partitions(1))
        .await
        .unwrap();
    let events = (0..10).map(|i| Event::new(format!("e{i}"))).collect();
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send_batch(events)
        .await
        .unwrap();
    let group = format!("evhub-close-g-{}", uuid::Uuid::new_v4().simple());
    let a = KafkaConsumer::join(cluster.clone(), &hub, ConsumerOptions::new(&group))
        .await
        .unwrap();
    let got = a.recv_batch(10, Duration::from_secs(30)).await.unwrap();
    assert!(!got.is_empty());
    // As if `commit` of offset 7 had been called and its broker round trip not yet run.
    a.group.add_pending(0, 8);
    a.close().await.unwrap();
    let probe: BaseConsumer = backend
        .settings()
        .client_config(ClientKind::Reader)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(&hub, 0);
    let committed = blocking(move || probe.committed_offsets(list, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        committed.find_partition(&hub, 0).unwrap().offset(),
        Offset::Offset(8)
    );
}
