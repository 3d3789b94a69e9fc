//! Group members under faults on the real broker: a member whose application stalls does not
//! stall the group, checkpoints outside the retained range do not jump to the latest event.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{broker_or_skip, Broker};
use evhub_conformance::unique_name;
use evhub_core::{
    Backend, Consumer, ConsumerOptions, Event, HubOptions, InitialPosition, PartitionId,
    ReceivedEvent,
};
use evhub_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use evhub_kafka::rdkafka::{Offset, TopicPartitionList};
use evhub_kafka::{ClientKind, KafkaBackend};

async fn hub(broker: &Broker, case: &str, partitions: u32) -> (KafkaBackend, String) {
    let backend = broker.admin().await.expect("connect");
    let name = unique_name(case);
    backend
        .create_hub(&name, HubOptions::with_partitions(partitions))
        .await
        .expect("create hub");
    (backend, name)
}

async fn join(broker: &Broker, hub: &str, options: ConsumerOptions) -> Arc<dyn Consumer> {
    KafkaBackend::connect(&broker.kafka_config())
        .await
        .expect("connect")
        .consumer(hub, options)
        .await
        .expect("join")
}

async fn first_event(consumer: &dyn Consumer, within: Duration) -> ReceivedEvent {
    tokio::time::timeout(within, consumer.recv())
        .await
        .expect("no event in time")
        .expect("recv")
}

/// Member A receives one event and then does nothing for 60 s while a backlog far larger than
/// its hand-over queue waits. Member B joins meanwhile and receives events of its share of the
/// partitions within the session timeout + 10 s: A's poll thread paused fetching and kept
/// serving the rebalance instead of waiting for A's application. Afterwards A hands out only
/// events of the partitions it still owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_member_does_not_stall_the_group() {
    let Some(broker) = broker_or_skip("slow_member_does_not_stall_the_group") else {
        return;
    };
    let session = Duration::from_millis(
        broker
            .kafka_config()
            .session_timeout_ms
            .expect("test session timeout"),
    );
    let (backend, hub) = hub(&broker, "slow-member", 4).await;
    let producer = backend.producer(&hub).await.unwrap();
    // 160 000 events: more than the member's hand-over queue holds before it pauses fetching.
    for chunk in 0..160 {
        let events = (0..1000u32)
            .map(|i| Event::new(vec![b'x'; 100]).with_partition((chunk * 1000 + i) % 4))
            .collect();
        producer.send_batch(events).await.unwrap();
    }
    let group = unique_name("slow-member-g");
    let a = join(&broker, &hub, ConsumerOptions::new(&group)).await;
    first_event(&*a, Duration::from_secs(30)).await;
    let idle_since = Instant::now();
    assert_eq!(a.assignment().await.unwrap().len(), 4);

    // A's application now does nothing. B joins after 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = join(&broker, &hub, ConsumerOptions::new(&group)).await;
    let joined = Instant::now();
    let limit = session + Duration::from_secs(10);
    let mut b_partitions = BTreeSet::new();
    let mut b_events = 0usize;
    while b_partitions.len() < 2 {
        let left = limit.saturating_sub(joined.elapsed());
        assert!(
            !left.is_zero(),
            "B received events of {b_partitions:?} ({b_events} events) within {limit:?}; the group stalled on A"
        );
        for e in b
            .recv_batch(1000, left.min(Duration::from_secs(1)))
            .await
            .unwrap()
        {
            b_partitions.insert(e.partition);
            b_events += 1;
        }
    }
    let b_share = joined.elapsed();
    eprintln!("slow member: B received events of partitions {b_partitions:?} {b_share:.1?} after joining (limit {limit:?})");

    // The rest of A's 60 idle seconds.
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(idle_since.elapsed())).await;
    let a_owns: BTreeSet<PartitionId> = a.assignment().await.unwrap().into_iter().collect();
    let b_owns: BTreeSet<PartitionId> = b.assignment().await.unwrap().into_iter().collect();
    assert_eq!(a_owns.len() + b_owns.len(), 4, "A {a_owns:?} B {b_owns:?}");
    assert!(a_owns.is_disjoint(&b_owns), "A {a_owns:?} B {b_owns:?}");
    // A is served again, and never with an event of a partition it gave up.
    let mut seen = 0;
    while seen < 5000 {
        let batch = a.recv_batch(1000, Duration::from_secs(10)).await.unwrap();
        assert!(
            !batch.is_empty(),
            "A received nothing after its idle period"
        );
        for e in &batch {
            assert!(
                a_owns.contains(&e.partition),
                "A handed out partition {} it no longer owns ({a_owns:?})",
                e.partition
            );
        }
        seen += batch.len();
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Commits `offset` for `group` on partition 0 of `hub` directly, as another client could have.
async fn store_checkpoint(backend: &KafkaBackend, hub: &str, group: &str, offset: i64) {
    let consumer: BaseConsumer = backend
        .settings()
        .client_config(ClientKind::Reader)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(hub, 0, Offset::Offset(offset))
        .unwrap();
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();
}

/// `initial_position` applies to partitions without a checkpoint only; a checkpoint in range
/// is resumed; a checkpoint outside the retained range resumes at the earliest event (with a
/// warning), even when the group's initial position is `Latest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_checkpoint_resumes_at_earliest_not_latest() {
    let Some(broker) = broker_or_skip("out_of_range_checkpoint_resumes_at_earliest_not_latest")
    else {
        return;
    };
    let (backend, hub) = hub(&broker, "out-of-range", 1).await;
    let producer = backend.producer(&hub).await.unwrap();
    let events = (0..5).map(|i| Event::new(format!("e{i}"))).collect();
    producer.send_batch(events).await.unwrap();
    let latest =
        |group: &str| ConsumerOptions::new(group).with_initial_position(InitialPosition::Latest);

    // A checkpoint beyond the end (as after the log was deleted and re-created, or expired).
    let beyond = unique_name("oor-beyond");
    store_checkpoint(&backend, &hub, &beyond, 1000).await;
    let c = join(&broker, &hub, latest(&beyond)).await;
    let e = first_event(&*c, Duration::from_secs(30)).await;
    assert_eq!(
        e.offset, 0,
        "out-of-range checkpoint did not resume at the earliest event"
    );
    c.close().await.unwrap();

    // A checkpoint in range is resumed exactly.
    let inside = unique_name("oor-inside");
    store_checkpoint(&backend, &hub, &inside, 3).await;
    let c = join(&broker, &hub, latest(&inside)).await;
    let e = first_event(&*c, Duration::from_secs(30)).await;
    assert_eq!(e.offset, 3);
    c.close().await.unwrap();

    // No checkpoint: `Latest` means the end; the next event sent is the first one received.
    let fresh = unique_name("oor-fresh");
    let c = join(&broker, &hub, latest(&fresh)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.assignment().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no assignment within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let early = c.recv_batch(10, Duration::from_secs(2)).await.unwrap();
    assert!(
        early.is_empty(),
        "Latest delivered old events: {:?}",
        early.iter().map(|e| e.offset).collect::<Vec<_>>()
    );
    producer.send(Event::new("after")).await.unwrap();
    let e = first_event(&*c, Duration::from_secs(30)).await;
    assert_eq!((e.offset, &e.payload[..]), (5, &b"after"[..]));
    c.close().await.unwrap();
}
