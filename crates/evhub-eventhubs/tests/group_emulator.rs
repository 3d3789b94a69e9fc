//! Consumer-group behaviour beyond the conformance suite: a member that closes or is dropped
//! hands its partitions over at the next balancing pass (it relinquishes its claims instead of
//! letting them expire), and commits for partitions a member does not own are conflicts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub_core::{Checkpoint, Consumer, ConsumerOptions, ErrorKind};

/// Well under the 20 s after which an abandoned claim expires.
const HANDOVER: Duration = Duration::from_secs(8);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn member(hub: &str, group: &str) -> Arc<dyn Consumer> {
    common::backend("memory://group-tests")
        .await
        .unwrap()
        .consumer(hub, ConsumerOptions::new(group))
        .await
        .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn two_settled_members(
    hub: &str,
    group: &str,
) -> (Arc<dyn Consumer>, Arc<dyn Consumer>, Vec<u32>) {
    common::create_hub(hub, 2).unwrap();
    common::create_group(hub, group).unwrap();
    let a = member(hub, group).await;
    let b = member(hub, group).await;
    wait_for("two members settle", Duration::from_secs(30), async || {
        let (x, y) = (a.assignment().await.unwrap(), b.assignment().await.unwrap());
        x.len() == 1 && y.len() == 1 && x != y
    })
    .await;
    let b_owned = b.assignment().await.unwrap();
    (a, b, b_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_member_hands_over_before_claims_expire() {
    let (hub, group) = (unique("handover-close"), "g".to_owned());
    let (a, b, _) = two_settled_members(&hub, &group).await;
    b.close().await.unwrap();
    let start = Instant::now();
    wait_for("takeover after close", HANDOVER, async || {
        a.assignment().await.unwrap() == [0, 1]
    })
    .await;
    eprintln!("takeover after close: {:?}", start.elapsed());
    // Later calls on the closed member fail with Closed.
    assert_eq!(b.recv().await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.assignment().await.unwrap_err().kind(), ErrorKind::Closed);
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_member_leaves_the_group() {
    let (hub, group) = (unique("handover-drop"), "g".to_owned());
    let (a, b, _) = two_settled_members(&hub, &group).await;
    drop(b);
    wait_for("takeover after drop", HANDOVER, async || {
        a.assignment().await.unwrap() == [0, 1]
    })
    .await;
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_for_a_partition_owned_by_another_member_is_not_owned() {
    let (hub, group) = (unique("conflict"), "g".to_owned());
    let (a, b, b_owned) = two_settled_members(&hub, &group).await;
    let foreign = Checkpoint {
        hub: hub.clone(),
        partition: b_owned[0],
        offset: 0,
        service_offset: None,
    };
    let outcome = a.commit(&foreign).await.unwrap();
    assert_eq!(outcome, evhub_core::CommitOutcome::NotOwned);
    let wrong_hub = Checkpoint {
        hub: "other".into(),
        ..foreign
    };
    assert_eq!(
        a.commit(&wrong_hub).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}
