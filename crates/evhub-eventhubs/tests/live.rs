//! Live runs against real Azure Event Hubs over AMQP, provisioned by `scripts/live-test.sh azure`
//! from `infra/` (variables in `infra/live-env.tsv`).
//!
//! The conformance suite needs a fresh hub and consumer group per case; Event Hubs creates
//! those only through Azure Resource Manager, not over AMQP, so the live tests exercise the
//! provisioned hub instead: metadata, every partition, keys, headers, partition readers from a
//! time, a consumer group with Blob checkpoints (commit and resume), and NotFound.
//!
//! Without the `EVHUB_LIVE_*` variables every test prints which are missing and returns.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use evhub_core::config::{EventHubsConfig, EventHubsConnectionString};
use evhub_core::{
    Backend, ConsumerOptions, ErrorKind, Event, InitialPosition, ReaderOptions, StartPosition,
};
use evhub_eventhubs::EventHubsBackend;
use evhub_live::{LiveConfig, Target};

const DEADLINE: Duration = Duration::from_secs(180);

fn unique() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The live backend: the namespace connection string, and Blob checkpoints under a fresh prefix
/// of the provisioned container.
async fn live_backend(live: &LiveConfig, prefix: &str) -> EventHubsBackend {
    let cs: EventHubsConnectionString = live
        .require("EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING")
        .parse()
        .expect("connection string");
    let mut config = EventHubsConfig::from_connection_string(cs);
    let container = live.require("EVHUB_LIVE_CHECKPOINT_CONTAINER");
    config.checkpoint_store = Some(format!("az://{container}/{prefix}"));
    let key = live
        .require("EVHUB_LIVE_CHECKPOINT_CONNECTION_STRING")
        .split(';')
        .find_map(|part| part.strip_prefix("AccountKey="))
        .expect("AccountKey in EVHUB_LIVE_CHECKPOINT_CONNECTION_STRING")
        .to_owned();
    let mut options = BTreeMap::new();
    options.insert(
        "azure_storage_account_name".to_owned(),
        live.require("EVHUB_LIVE_CHECKPOINT_ACCOUNT").to_owned(),
    );
    options.insert("azure_storage_account_key".to_owned(), key);
    config.checkpoint_store_options = options;
    EventHubsBackend::connect(&config).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_eventhubs_metadata_send_and_read() {
    let Some(live) = LiveConfig::from_env_or_skip(Target::EventHubs) else {
        return;
    };
    tokio::time::timeout(DEADLINE, async {
        let backend = live_backend(&live, &format!("evhub-live-{}", unique())).await;
        let hub = live.require("EVHUB_LIVE_EVENTHUBS_HUB");
        let partitions: u32 = live
            .require_parsed("EVHUB_LIVE_EVENTHUBS_PARTITIONS")
            .expect("partition count");
        let props = backend.hub_properties(hub).await.unwrap();
        assert_eq!(props.partitions, (0..partitions).collect::<Vec<_>>());

        let run = unique();
        let before = SystemTime::now() - Duration::from_secs(5);
        let producer = backend.producer(hub).await.unwrap();
        let events: Vec<Event> = (0..partitions)
            .map(|p| {
                Event::new(format!("{run}-p{p}"))
                    .with_partition(p)
                    .with_key(format!("key-{run}"))
                    .with_header("run", run.clone())
                    .with_header("binary", vec![0u8, 255, 7])
            })
            .collect();
        producer.send_batch(events).await.unwrap();
        for p in 0..partitions {
            let reader = backend
                .partition_reader(hub, ReaderOptions::new(p, StartPosition::Time(before)))
                .await
                .unwrap();
            let want = format!("{run}-p{p}");
            loop {
                let event = reader.recv().await.unwrap();
                if event.payload == want.as_bytes() {
                    assert_eq!(event.key.as_deref(), Some(format!("key-{run}").as_bytes()));
                    assert_eq!(
                        event.header("binary").map(|v| v.to_vec()),
                        Some(vec![0u8, 255, 7])
                    );
                    break;
                }
            }
            reader.close().await.unwrap();
            let pp = backend.partition_properties(hub, p).await.unwrap();
            assert!(!pp.is_empty(), "partition {p} empty after a send: {pp:?}");
        }
        producer.close().await.unwrap();
    })
    .await
    .expect("live metadata/send/read within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_eventhubs_group_commits_to_blob_and_resumes() {
    let Some(live) = LiveConfig::from_env_or_skip(Target::EventHubs) else {
        return;
    };
    tokio::time::timeout(DEADLINE, async {
        // A fresh checkpoint prefix makes the provisioned group new to evhub.
        let prefix = format!("evhub-live-{}", unique());
        let hub = live.require("EVHUB_LIVE_EVENTHUBS_HUB");
        let group = live.require("EVHUB_LIVE_EVENTHUBS_CONSUMER_GROUP");
        let backend = live_backend(&live, &prefix).await;
        let member = backend
            .consumer(
                hub,
                ConsumerOptions::new(group).with_initial_position(InitialPosition::Latest),
            )
            .await
            .unwrap();
        let partitions: usize = live
            .require_parsed("EVHUB_LIVE_EVENTHUBS_PARTITIONS")
            .expect("partition count");
        let start = Instant::now();
        while member.assignment().await.unwrap().len() < partitions {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no full assignment"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let run = unique();
        let producer = backend.producer(hub).await.unwrap();
        producer
            .send_batch(
                (0..4)
                    .map(|i| Event::new(format!("{run}-{i}")).with_key(run.clone()))
                    .collect(),
            )
            .await
            .unwrap();
        let mut mine = Vec::new();
        while mine.len() < 4 {
            let event = member.recv().await.unwrap();
            if event.payload.starts_with(run.as_bytes()) {
                mine.push(event);
            }
        }
        member.commit(&mine[1].checkpoint()).await.unwrap();
        member.close().await.unwrap();

        let again = live_backend(&live, &prefix)
            .await
            .consumer(hub, ConsumerOptions::new(group))
            .await
            .unwrap();
        let mut resumed = Vec::new();
        while resumed.len() < 2 {
            let event = again.recv().await.unwrap();
            if event.payload.starts_with(run.as_bytes()) {
                resumed.push(String::from_utf8_lossy(&event.payload).into_owned());
            }
        }
        assert_eq!(resumed, [format!("{run}-2"), format!("{run}-3")]);
        again.close().await.unwrap();
    })
    .await
    .expect("live consumer group within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_eventhubs_unknown_hub_is_not_found() {
    let Some(live) = LiveConfig::from_env_or_skip(Target::EventHubs) else {
        return;
    };
    tokio::time::timeout(DEADLINE, async {
        let backend = live_backend(&live, "evhub-live-unused").await;
        let missing = format!("evhub-missing-{}", unique());
        let e = backend.hub_properties(&missing).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let e = backend.producer(&missing).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    })
    .await
    .expect("live NotFound within the deadline");
}
