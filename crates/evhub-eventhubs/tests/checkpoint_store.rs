//! The object-store checkpoint store: local directory on disk and Azure Blob on Azurite, with
//! concurrent ownership claims where exactly one claimer wins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use evhub_eventhubs::checkpoint::open_object_checkpoint_store;
use evhub_eventhubs::{CheckpointStore, ObjectStoreCheckpointStore, Ownership, StoreCheckpoint};

const NS: &str = "ns.servicebus.windows.net";
const HUB: &str = "orders";

fn ownership(group: &str, partition: &str, owner: &str, etag: Option<&Ownership>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: group.into(),
        partition_id: partition.into(),
        owner_id: Some(owner.into()),
        etag: etag.and_then(|o| o.etag.clone()),
        last_modified_time: None,
    }
}

/// Runs every behaviour case against `store`, in a fresh group named after `label`.
async fn exercise(store: ObjectStoreCheckpointStore, label: &str) {
    let store: Arc<dyn CheckpointStore> = Arc::new(store);
    let group = format!("{label}-{}", uuid_like());

    // First claims: one per partition, each wins.
    let first = store
        .claim_ownership(&[
            ownership(&group, "0", "a", None),
            ownership(&group, "1", "a", None),
        ])
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    let listed = store.list_ownerships(NS, HUB, &group).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|o| o.owner_id.as_deref() == Some("a")));
    assert!(listed.iter().all(|o| o.last_modified_time.is_some()));

    // A claim with no ETag on an owned partition loses.
    let lost = store
        .claim_ownership(&[ownership(&group, "0", "b", None)])
        .await
        .unwrap();
    assert!(lost.is_empty(), "claim without ETag won: {lost:?}");

    // Renewal with the current ETag wins and changes the ETag; the old ETag then loses.
    let p0 = first
        .iter()
        .find(|o| o.partition_id == "0")
        .unwrap()
        .clone();
    let renewed = store
        .claim_ownership(&[ownership(&group, "0", "a", Some(&p0))])
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1);
    assert_ne!(renewed[0].etag, p0.etag);
    let stale = store
        .claim_ownership(&[ownership(&group, "0", "b", Some(&p0))])
        .await
        .unwrap();
    assert!(stale.is_empty(), "stale ETag won: {stale:?}");

    // Concurrent claims on the same version: exactly one of ten wins, and the store agrees.
    let current = renewed[0].clone();
    let claims = (0..10).map(|i| {
        let store = store.clone();
        let claim = ownership(&group, "0", &format!("c{i}"), Some(&current));
        tokio::spawn(async move { store.claim_ownership(&[claim]).await.unwrap() })
    });
    let results = futures::future::join_all(claims).await;
    let winners: Vec<Ownership> = results.into_iter().flat_map(|r| r.unwrap()).collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let listed = store.list_ownerships(NS, HUB, &group).await.unwrap();
    let p0_now = listed.iter().find(|o| o.partition_id == "0").unwrap();
    assert_eq!(p0_now.owner_id, winners[0].owner_id);
    assert_eq!(p0_now.etag, winners[0].etag);

    // Concurrent first claims of a new partition: exactly one wins.
    let claims = (0..10).map(|i| {
        let store = store.clone();
        let claim = ownership(&group, "7", &format!("n{i}"), None);
        tokio::spawn(async move { store.claim_ownership(&[claim]).await.unwrap() })
    });
    let winners: usize = futures::future::join_all(claims)
        .await
        .into_iter()
        .map(|r| r.unwrap().len())
        .sum();
    assert_eq!(winners, 1);

    // Relinquish: owner cleared, then anyone may claim with the current ETag.
    let mut release = p0_now.clone();
    release.owner_id = None;
    let released = store.claim_ownership(&[release]).await.unwrap();
    assert_eq!(released.len(), 1);
    let listed = store.list_ownerships(NS, HUB, &group).await.unwrap();
    assert!(listed
        .iter()
        .any(|o| o.partition_id == "0" && o.owner_id.is_none()));

    // Checkpoints: write, overwrite, list per group.
    for (seq, offset) in [(4, "400"), (9, "900")] {
        store
            .update_checkpoint(StoreCheckpoint {
                fully_qualified_namespace: NS.into(),
                event_hub_name: HUB.into(),
                consumer_group: group.clone(),
                partition_id: "1".into(),
                offset: Some(offset.into()),
                sequence_number: Some(seq),
            })
            .await
            .unwrap();
    }
    let checkpoints = store.list_checkpoints(NS, HUB, &group).await.unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].partition_id, "1");
    assert_eq!(checkpoints[0].sequence_number, Some(9));
    assert_eq!(checkpoints[0].offset.as_deref(), Some("900"));
    let other = store
        .list_checkpoints(NS, HUB, "other-group")
        .await
        .unwrap();
    assert!(other.is_empty());
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let store = open_object_checkpoint_store(Some(url.as_str()), &BTreeMap::new()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), exercise(store, "local"))
        .await
        .expect("local directory store test timed out");
    // Records are plain files under the directory.
    let files = walk(dir.path());
    assert!(
        files.iter().any(|f| f.contains("checkpoint")),
        "files: {files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_memory_store_is_shared_between_opens() {
    let name = format!("memory://shared-{}", uuid_like());
    let a = open_object_checkpoint_store(Some(&name), &BTreeMap::new()).unwrap();
    let b = open_object_checkpoint_store(Some(&name), &BTreeMap::new()).unwrap();
    let won = a
        .claim_ownership(&[ownership("g", "0", "a", None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    let seen = b.list_ownerships(NS, HUB, "g").await.unwrap();
    assert_eq!(seen.len(), 1);
    exercise(a, "memory").await;
}

/// Azure Blob Storage on Azurite; `scripts/azurite.sh start` and
/// `eval "$(scripts/azurite.sh env)"` set `EVHUB_TEST_AZURITE_BLOB_ENDPOINT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_store_on_azurite() {
    let Some(azurite) = evhub_testkit::azurite::Azurite::from_env() else {
        eprintln!(
            "SKIPPED azure_blob_store_on_azurite: EVHUB_TEST_AZURITE_* are not set \
             (run scripts/azurite.sh start and eval \"$(scripts/azurite.sh env)\")"
        );
        return;
    };
    let container = format!("evhub-test-{}", uuid_like());
    azurite.create_container(&container).unwrap();
    let options = azurite.store_options();
    let store =
        open_object_checkpoint_store(Some(&format!("az://{container}/checkpoints")), &options)
            .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(120), exercise(store, "blob"))
        .await
        .expect("azurite store test timed out");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

fn checkpoint(group: &str, partition: &str, offset: &str, seq: i64) -> StoreCheckpoint {
    StoreCheckpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: group.into(),
        partition_id: partition.into(),
        offset: Some(offset.into()),
        sequence_number: Some(seq),
    }
}

/// Zero-length objects named and annotated like Microsoft's blob checkpoint stores write them.
#[tokio::test]
async fn records_use_microsofts_blob_layout_and_metadata() {
    use object_store::{Attribute, ObjectStoreExt};
    let memory = Arc::new(object_store::memory::InMemory::new());
    let store = ObjectStoreCheckpointStore::new(memory.clone(), "prefix".into());
    let won = store
        .claim_ownership(&[ownership("Billing", "0", "member-a", None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    store
        .update_checkpoint(checkpoint("Billing", "0", "1024", 17))
        .await
        .unwrap();
    let meta = |path: &'static str, key: &'static str| {
        let memory = memory.clone();
        async move {
            let got = memory
                .get(&path.into())
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(got.meta.size, 0, "{path} is zero-length");
            got.attributes
                .get(&Attribute::Metadata(key.into()))
                .map(|v| v.to_string())
        }
    };
    let group = "prefix/ns.servicebus.windows.net/orders/billing";
    let ownership_path: &'static str = Box::leak(format!("{group}/ownership/0").into_boxed_str());
    let checkpoint_path: &'static str = Box::leak(format!("{group}/checkpoint/0").into_boxed_str());
    assert_eq!(
        meta(ownership_path, "ownerid").await.as_deref(),
        Some("member-a")
    );
    assert_eq!(
        meta(checkpoint_path, "offset").await.as_deref(),
        Some("1024")
    );
    assert_eq!(
        meta(checkpoint_path, "sequencenumber").await.as_deref(),
        Some("17")
    );
    // Released = empty owner id, which Microsoft's processors read as unowned.
    let mut release = won[0].clone();
    release.owner_id = None;
    store.claim_ownership(&[release]).await.unwrap();
    assert_eq!(meta(ownership_path, "ownerid").await.as_deref(), Some(""));
    let listed = store.list_ownerships(NS, HUB, "Billing").await.unwrap();
    assert_eq!(listed[0].owner_id, None);
}

/// Records of the layout evhub wrote before: checkpoints (JSON bodies) are read and rewritten
/// in the new layout, old ownership objects are dropped.
async fn migrates_previous_layout(
    store: ObjectStoreCheckpointStore,
    raw: Arc<dyn object_store::ObjectStore>,
) {
    use object_store::{ObjectStoreExt, PutPayload};
    let group = "g-old";
    let base = format!("{NS}/{HUB}/{group}");
    raw.put(
        &format!("{base}/checkpoint/1").as_str().into(),
        PutPayload::from(r#"{"offset":"4096","sequence_number":41}"#.as_bytes().to_vec()),
    )
    .await
    .unwrap();
    raw.put(
        &format!("{base}/ownership/0/00000000000000000003")
            .as_str()
            .into(),
        PutPayload::from(r#"{"owner_id":"old","modified_ms":1}"#.as_bytes().to_vec()),
    )
    .await
    .unwrap();
    let listed = store.list_checkpoints(NS, HUB, group).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sequence_number, Some(41));
    assert_eq!(listed[0].offset.as_deref(), Some("4096"));
    // Rewritten in the new format: reads the same, and commits go on from there.
    let again = store.list_checkpoints(NS, HUB, group).await.unwrap();
    assert_eq!(again[0].sequence_number, Some(41));
    assert!(store
        .list_ownerships(NS, HUB, group)
        .await
        .unwrap()
        .is_empty());
    // The partition whose old ownership was dropped can be claimed in the new layout.
    let won = store
        .claim_ownership(&[ownership(group, "0", "new", None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    store
        .update_checkpoint(checkpoint(group, "1", "5000", 50))
        .await
        .unwrap();
    let after = store.list_checkpoints(NS, HUB, group).await.unwrap();
    assert_eq!(after[0].sequence_number, Some(50));
}

#[tokio::test]
async fn previous_layout_is_migrated_on_object_stores() {
    let memory = Arc::new(object_store::memory::InMemory::new());
    let store =
        ObjectStoreCheckpointStore::new(memory.clone(), object_store::path::Path::default());
    migrates_previous_layout(store, memory).await;
}

#[tokio::test]
async fn previous_layout_is_migrated_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    // The previous layout was written through object_store's local file system.
    let raw = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let store = open_object_checkpoint_store(Some(url.as_str()), &BTreeMap::new()).unwrap();
    migrates_previous_layout(store, raw).await;
}

/// A record the local store cannot read is an error that names it, never an empty answer.
#[tokio::test]
async fn corrupt_local_records_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let store = open_object_checkpoint_store(Some(url.as_str()), &BTreeMap::new()).unwrap();
    store
        .update_checkpoint(checkpoint("g", "0", "1", 1))
        .await
        .unwrap();
    store
        .claim_ownership(&[ownership("g", "0", "a", None)])
        .await
        .unwrap();
    let base = dir.path().join(NS).join(HUB).join("g");
    std::fs::write(base.join("checkpoint").join("0"), b"{\"version\":2,\"meta").unwrap();
    let e = store.list_checkpoints(NS, HUB, "g").await.unwrap_err();
    assert_eq!(
        *e.kind(),
        azure_core::error::ErrorKind::DataConversion,
        "{e}"
    );
    assert!(e.to_string().contains("checkpoint/0"), "{e}");
    std::fs::write(base.join("ownership").join("0"), b"").unwrap();
    let e = store.list_ownerships(NS, HUB, "g").await.unwrap_err();
    assert_eq!(
        *e.kind(),
        azure_core::error::ErrorKind::DataConversion,
        "{e}"
    );
}
