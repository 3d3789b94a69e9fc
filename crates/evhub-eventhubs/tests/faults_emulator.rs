//! Faults a consumer-group member must surface instead of waiting forever: every checkpoint
//! store error kind reaches `recv` (permanent ones end the member, an unreachable store is
//! reported and retried), a corrupt or truncated record on `file://` is an error from `recv`,
//! and `close` returns in bounded time and releases the partitions when the server is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::error::ErrorKind as AzureKind;
use evhub_core::{Backend, Consumer, ConsumerOptions, ErrorKind, Event};
use evhub_eventhubs::{CheckpointStore, EventHubsBackend, Ownership, StoreCheckpoint};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A store that fails every call with the injected kind while one is set.
struct FailingStore {
    inner: Arc<dyn CheckpointStore>,
    fail: Mutex<Option<AzureKind>>,
}

impl FailingStore {
    fn check(&self) -> azure_core::Result<()> {
        match self.fail.lock().unwrap().clone() {
            Some(kind) => Err(azure_core::Error::with_message(
                kind,
                "injected store failure",
            )),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FailingStore {
    async fn claim_ownership(&self, o: &[Ownership]) -> azure_core::Result<Vec<Ownership>> {
        self.check()?;
        self.inner.claim_ownership(o).await
    }
    async fn list_checkpoints(
        &self,
        ns: &str,
        hub: &str,
        group: &str,
    ) -> azure_core::Result<Vec<StoreCheckpoint>> {
        self.check()?;
        self.inner.list_checkpoints(ns, hub, group).await
    }
    async fn list_ownerships(
        &self,
        ns: &str,
        hub: &str,
        group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        self.check()?;
        self.inner.list_ownerships(ns, hub, group).await
    }
    async fn update_checkpoint(&self, c: StoreCheckpoint) -> azure_core::Result<()> {
        self.check()?;
        self.inner.update_checkpoint(c).await
    }
}

fn failing(kind: Option<AzureKind>) -> Arc<FailingStore> {
    let inner = evhub_eventhubs::open_checkpoint_store(
        Some(&format!("memory://{}", unique("failing"))),
        &Default::default(),
    )
    .unwrap();
    Arc::new(FailingStore {
        inner,
        fail: Mutex::new(kind),
    })
}

async fn member_with_store(
    hub: &str,
    store: Arc<dyn CheckpointStore>,
    interval_ms: u64,
) -> Arc<dyn Consumer> {
    let mut config = common::config("memory");
    config.load_balancing_interval_ms = interval_ms;
    config.partition_ownership_expiration_interval_ms = interval_ms * 4;
    let backend = EventHubsBackend::connect(&config)
        .await
        .unwrap()
        .with_checkpoint_store(store);
    backend
        .consumer(hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permanent_store_error_kind_reaches_recv_and_sticks() {
    for (injected, expected) in [
        (AzureKind::Credential, ErrorKind::Auth),
        (AzureKind::DataConversion, ErrorKind::Protocol),
        (AzureKind::Other, ErrorKind::Other),
    ] {
        let hub = unique("store-fatal");
        common::create_hub(&hub, 2).unwrap();
        let consumer = member_with_store(&hub, failing(Some(injected.clone())), 1_000).await;
        let e = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("recv waited forever on a {injected:?} store error"))
            .unwrap_err();
        assert_eq!(e.kind(), expected, "{injected:?}: {e}");
        assert!(!e.is_retriable(), "{e}");
        // The member is over: every later call says so at once.
        let again = tokio::time::timeout(Duration::from_secs(1), consumer.recv())
            .await
            .expect("a fatal error is replayed at once")
            .unwrap_err();
        assert_eq!(again.kind(), expected);
        let batch = consumer.recv_batch(10, Duration::from_secs(1)).await;
        assert_eq!(batch.unwrap_err().kind(), expected);
        tokio::time::timeout(Duration::from_secs(30), consumer.close())
            .await
            .expect("close is bounded")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_reported_and_the_member_recovers() {
    let hub = unique("store-down");
    common::create_hub(&hub, 1).unwrap();
    let store = failing(Some(AzureKind::Io));
    let consumer = member_with_store(&hub, store.clone(), 500).await;
    let e = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("an outage longer than the ownership expiry is reported")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retriable(), "{e}");
    // The store comes back: the same member reads.
    *store.fail.lock().unwrap() = None;
    let backend = common::backend("memory").await.unwrap();
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send(Event::new("after the outage"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        assert!(Instant::now() < deadline, "member did not recover");
        match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Ok(event)) => break event,
            Ok(Err(e)) => assert!(e.is_retriable(), "only retriable reports: {e}"),
            Err(_) => {}
        }
    };
    assert_eq!(&event.payload[..], b"after the outage");
    consumer.close().await.unwrap();
}

/// Writes `content` where the `file://` store keeps `kind` (`checkpoint` or `ownership`) of
/// partition 0 for `hub` and group `g`.
fn plant(dir: &std::path::Path, hub: &str, kind: &str, content: &[u8]) {
    let path = dir.join("127.0.0.1").join(hub).join("g").join(kind);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("0"), content).unwrap();
}

async fn corrupt_record_case(kind: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let hub = unique(&format!("corrupt-{kind}"));
    common::create_hub(&hub, 2).unwrap();
    common::create_group(&hub, "g").unwrap();
    plant(dir.path(), &hub, kind, content);
    let backend = common::backend(url.as_str()).await.unwrap();
    let consumer = backend
        .consumer(&hub, ConsumerOptions::new("g"))
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("recv waited forever on a corrupt {kind} record"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(
        e.to_string().contains(kind),
        "the error names the record: {e}"
    );
    tokio::time::timeout(Duration::from_secs(30), consumer.close())
        .await
        .expect("close is bounded")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_checkpoint_file_is_an_error_from_recv() {
    corrupt_record_case("checkpoint", br#"{"version":3,"metadata":{"offs"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_ownership_file_is_an_error_from_recv() {
    corrupt_record_case("ownership", b"\0\0garbage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_bounded_and_releases_partitions_when_the_server_is_gone() {
    let hub = unique("close-gone");
    common::create_hub(&hub, 2).unwrap();
    let store = format!("memory://{}", unique("close-gone"));
    let (proxy, cut) = common::cuttable_proxy(common::emulator().local_addr())
        .await
        .unwrap();
    let doomed: Arc<dyn Backend> = Arc::new(
        EventHubsBackend::connect(&common::config_via(proxy, &store))
            .await
            .unwrap(),
    );
    let a = doomed
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap();
    let start = Instant::now();
    while a.assignment().await.unwrap().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a never owned both"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cut.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), a.close())
        .await
        .expect("close returns within 30 s with the server gone")
        .unwrap();
    let took = start.elapsed();
    eprintln!("close with the server gone: {took:?}");
    // Released at close, not after the 20 s expiry: a new member owns everything at once.
    let backend = common::backend(&store).await.unwrap();
    let b = backend
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap();
    let start = Instant::now();
    while b.assignment().await.unwrap().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "partitions were not released at close"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_deliver_each_committed_event_once() {
    let hub = unique("blip");
    common::create_hub(&hub, 2).unwrap();
    let store = format!("memory://{}", unique("blip"));
    let (proxy, net) = common::cuttable_proxy(common::emulator().local_addr())
        .await
        .unwrap();
    let backend = EventHubsBackend::connect(&common::config_via(proxy, &store))
        .await
        .unwrap();
    let consumer = backend
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap();
    let producer = common::backend("memory")
        .await
        .unwrap()
        .producer(&hub)
        .await
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0..3 {
        let events: Vec<Event> = (0..20)
            .map(|i| Event::new(format!("r{round}-{i}")).with_key(format!("k{i}")))
            .collect();
        producer.send_batch(events).await.unwrap();
        let want = (round + 1) * 20;
        while seen.len() < want {
            assert!(Instant::now() < deadline, "read {} of {want}", seen.len());
            let batch = consumer
                .recv_batch(50, Duration::from_millis(500))
                .await
                .or_else(|e| {
                    if e.is_retriable() {
                        Ok(Vec::new())
                    } else {
                        Err(e)
                    }
                })
                .unwrap();
            for event in batch {
                seen.push(String::from_utf8_lossy(&event.payload).into_owned());
                consumer.commit(&event.checkpoint()).await.unwrap();
            }
        }
        // A network blip: every connection of the member drops and is re-established.
        net.reset();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(batch) = consumer.recv_batch(50, Duration::from_millis(200)).await {
        if batch.is_empty() {
            break;
        }
        seen.extend(
            batch
                .iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned()),
        );
    }
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 60, "every event read");
    assert_eq!(seen.len(), 60, "no committed event read again: {seen:?}");
    consumer.close().await.unwrap();
}

/// `close` lets a commit in flight finish before it releases the partitions: the next member
/// resumes after that commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_keeps_a_commit_in_flight() {
    let hub = unique("close-commit");
    common::create_hub(&hub, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = url::Url::from_directory_path(dir.path())
        .unwrap()
        .to_string();
    let backend = common::backend(&store).await.unwrap();
    let events: Vec<Event> = (0..10).map(|i| Event::new(format!("e{i}"))).collect();
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send_batch(events)
        .await
        .unwrap();
    let a = backend
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            tokio::time::timeout(Duration::from_secs(20), a.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let last = last.unwrap();
    assert_eq!(&last.payload[..], b"e5");
    let checkpoint = last.checkpoint();
    let (committed, closed) = tokio::join!(a.commit(&checkpoint), a.close());
    closed.unwrap();
    assert!(committed.unwrap().is_committed());
    let b = backend
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &next.payload[..],
        b"e6",
        "resumes after the commit made during close"
    );
    b.close().await.unwrap();
}
