//! A [`CheckpointStore`] on Apache `object_store`: Azure Blob, S3, GCS, a local directory or
//! memory.
//!
//! Layout under the store prefix (names lowercased like the Azure SDK blob store does):
//!
//! ```text
//! <namespace>/<hub>/<group>/checkpoint/<partition>             {"offset":..,"sequence_number":..}
//! <namespace>/<hub>/<group>/ownership/<partition>/<version>    {"owner_id":..,"modified_ms":..}
//! ```
//!
//! Ownership claims are compare-and-swap on a version number: a claim that saw version `v`
//! (its ETag) creates object `v + 1` with create-if-absent, so of two claims on the same version
//! exactly one wins, on every store that supports `PutMode::Create` (the local file system does
//! not support `PutMode::Update`, which is why the version lives in the name). A winner then
//! checks that its version is the newest, which also rejects claims from very stale ETags whose
//! version object was already garbage-collected, and deletes versions older than the one it
//! replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use azure_core::error::ErrorKind as AzureKind;
use azure_core::http::Etag;
use azure_core::time::OffsetDateTime;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs::CheckpointStore;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

/// Checkpoints and ownership records in an object store.
#[derive(Clone)]
pub struct ObjectStoreCheckpointStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl std::fmt::Debug for ObjectStoreCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreCheckpointStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointRecord {
    offset: Option<String>,
    sequence_number: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OwnershipRecord {
    owner_id: Option<String>,
    modified_ms: u64,
}

fn store_error(what: &str, e: object_store::Error) -> azure_core::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => AzureKind::Other,
        object_store::Error::Unauthenticated { .. }
        | object_store::Error::PermissionDenied { .. } => AzureKind::Credential,
        _ => AzureKind::Io,
    };
    azure_core::Error::with_error(kind, e, format!("checkpoint store: {what}"))
}

fn data_error(what: String) -> azure_core::Error {
    azure_core::Error::with_message(AzureKind::DataConversion, what)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_offset_time(ms: u64) -> Option<OffsetDateTime> {
    Some(OffsetDateTime::from(UNIX_EPOCH + Duration::from_millis(ms)))
}

fn version_name(version: u64) -> String {
    format!("{version:020}")
}

impl ObjectStoreCheckpointStore {
    /// A store keeping records under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    fn group_path(&self, namespace: &str, hub: &str, group: &str) -> Path {
        self.prefix
            .clone()
            .join(namespace.to_ascii_lowercase())
            .join(hub.to_ascii_lowercase())
            .join(group.to_ascii_lowercase())
    }

    fn ownership_dir(&self, o: &Ownership) -> Path {
        self.group_path(
            &o.fully_qualified_namespace,
            &o.event_hub_name,
            &o.consumer_group,
        )
        .join("ownership")
        .join(o.partition_id.as_str())
    }

    /// Versions of one partition's ownership record, ascending.
    async fn versions(&self, dir: &Path) -> azure_core::Result<Vec<u64>> {
        let metas: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| store_error("listing ownership versions", e))?;
        let mut versions: Vec<u64> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(|f| f.parse().ok()))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> azure_core::Result<Option<T>> {
        match self.store.get(path).await {
            Ok(result) => {
                let bytes = result
                    .bytes()
                    .await
                    .map_err(|e| store_error("reading a record", e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| data_error(format!("checkpoint store record `{path}`: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error("reading a record", e)),
        }
    }

    /// One claim: `Ok(Some)` when won, `Ok(None)` when another claim won.
    async fn claim_one(&self, requested: &Ownership) -> azure_core::Result<Option<Ownership>> {
        let seen = match &requested.etag {
            None => 0,
            Some(etag) => etag.to_string().parse::<u64>().map_err(|_| {
                data_error(format!("ownership ETag `{etag}` is not a version number"))
            })?,
        };
        let next = seen + 1;
        let dir = self.ownership_dir(requested);
        let modified_ms = now_ms();
        let record = OwnershipRecord {
            owner_id: requested.owner_id.clone().filter(|o| !o.is_empty()),
            modified_ms,
        };
        let body = serde_json::to_vec(&record)
            .map_err(|e| data_error(format!("encoding ownership: {e}")))?;
        let put = self
            .store
            .put_opts(
                &dir.clone().join(version_name(next)),
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => return Ok(None),
            Err(e) => return Err(store_error("claiming ownership", e)),
        }
        let versions = self.versions(&dir).await?;
        if versions.last() != Some(&next) {
            return Ok(None);
        }
        for old in versions.iter().filter(|v| **v < seen) {
            // Garbage; a failed delete only leaves an unused object behind.
            let _ = self
                .store
                .delete(&dir.clone().join(version_name(*old)))
                .await;
        }
        let mut won = requested.clone();
        won.owner_id = record.owner_id;
        won.etag = Some(Etag::from(next.to_string()));
        won.last_modified_time = to_offset_time(modified_ms);
        Ok(Some(won))
    }
}

#[async_trait]
impl CheckpointStore for ObjectStoreCheckpointStore {
    async fn claim_ownership(
        &self,
        ownerships: &[Ownership],
    ) -> azure_core::Result<Vec<Ownership>> {
        let results = futures::future::join_all(ownerships.iter().map(|o| self.claim_one(o))).await;
        let mut claimed = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Some(o)) => claimed.push(o),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ownership claim failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if claimed.is_empty() => Err(e),
            _ => Ok(claimed),
        }
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Checkpoint>> {
        let dir = self
            .group_path(namespace, event_hub_name, consumer_group)
            .join("checkpoint");
        let metas: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| store_error("listing checkpoints", e))?;
        let reads = metas.into_iter().filter_map(|meta| {
            let partition = meta.location.filename()?.to_owned();
            Some(async move {
                let record: Option<CheckpointRecord> = self.read_json(&meta.location).await?;
                Ok::<_, azure_core::Error>(record.map(|r| Checkpoint {
                    fully_qualified_namespace: namespace.to_owned(),
                    event_hub_name: event_hub_name.to_owned(),
                    consumer_group: consumer_group.to_owned(),
                    partition_id: partition,
                    offset: r.offset,
                    sequence_number: r.sequence_number,
                }))
            })
        });
        let found: Vec<Option<Checkpoint>> = futures::stream::iter(reads)
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        let dir = self
            .group_path(namespace, event_hub_name, consumer_group)
            .join("ownership");
        let metas: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| store_error("listing ownerships", e))?;
        // partition -> newest version
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        for meta in &metas {
            let parts: Vec<_> = meta.location.parts().collect();
            let [.., partition, version] = parts.as_slice() else {
                continue;
            };
            let Ok(version) = version.as_ref().parse::<u64>() else {
                continue;
            };
            let entry = newest.entry(partition.as_ref().to_owned()).or_insert(0);
            *entry = (*entry).max(version);
        }
        let reads = newest.into_iter().map(|(partition, version)| {
            let path = dir
                .clone()
                .join(partition.as_str())
                .join(version_name(version));
            async move {
                let record: Option<OwnershipRecord> = self.read_json(&path).await?;
                Ok::<_, azure_core::Error>(record.map(|r| Ownership {
                    fully_qualified_namespace: namespace.to_owned(),
                    event_hub_name: event_hub_name.to_owned(),
                    consumer_group: consumer_group.to_owned(),
                    partition_id: partition,
                    owner_id: r.owner_id,
                    etag: Some(Etag::from(version.to_string())),
                    last_modified_time: to_offset_time(r.modified_ms),
                }))
            }
        });
        let found: Vec<Option<Ownership>> = futures::stream::iter(reads)
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> azure_core::Result<()> {
        if checkpoint.partition_id.is_empty() {
            return Err(data_error("checkpoint without partition id".into()));
        }
        let path = self
            .group_path(
                &checkpoint.fully_qualified_namespace,
                &checkpoint.event_hub_name,
                &checkpoint.consumer_group,
            )
            .join("checkpoint")
            .join(checkpoint.partition_id.as_str());
        let record = CheckpointRecord {
            offset: checkpoint.offset,
            sequence_number: checkpoint.sequence_number,
        };
        let body = serde_json::to_vec(&record)
            .map_err(|e| data_error(format!("encoding checkpoint: {e}")))?;
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| store_error("writing a checkpoint", e))
    }
}
