//! A [`CheckpointStore`] in the layout Microsoft's Event Hubs processors share (.NET, Java,
//! Python, JavaScript and the Rust SDK's blob store), on any object store or a local directory.
//!
//! Under the store prefix, names lowercased like Microsoft's blob stores do:
//!
//! ```text
//! <namespace>/<hub>/<group>/checkpoint/<partition>   metadata: offset, sequencenumber
//! <namespace>/<hub>/<group>/ownership/<partition>    metadata: ownerid ("" = released)
//! ```
//!
//! Records are zero-length objects whose user metadata carries the values; a claim is a
//! conditional write on the record's ETag (`If-Match`), or create-if-absent for a partition
//! never claimed, so of two claims on the same version exactly one wins — between evhub
//! members and Microsoft processors alike. On `file://` each record is a file holding its
//! metadata and version as JSON (see [`LocalRecords`](super::records::LocalRecords)).
//!
//! Migration from the layout evhub wrote before (checkpoint objects with a JSON body
//! `{"offset","sequence_number"}`, ownership as `ownership/<partition>/<version>` objects):
//! a checkpoint in the old format is read and rewritten in the new one the first time a
//! member lists the group's checkpoints; old ownership objects are deleted when listed (claims
//! are short-lived; members of the old version must be stopped before the new ones start).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_core::time::OffsetDateTime;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs::CheckpointStore;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Deserialize;

use super::records::{
    data_error, Condition, LocalRecords, ObjectRecords, Record, Records, Written,
};

/// Metadata names of Microsoft's blob checkpoint stores.
pub const OFFSET: &str = "offset";
/// Sequence number of the checkpointed event.
pub const SEQUENCE_NUMBER: &str = "sequencenumber";
/// Owner of a partition; empty when released.
pub const OWNER_ID: &str = "ownerid";

/// How many records are read at once when listing.
const READ_CONCURRENCY: usize = 16;

/// Checkpoints and ownership records in Microsoft's processor layout.
#[derive(Clone)]
pub struct ObjectStoreCheckpointStore {
    records: Arc<dyn Records>,
    prefix: Path,
    describe: String,
}

impl std::fmt::Debug for ObjectStoreCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreCheckpointStore")
            .field("store", &self.describe)
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

/// A checkpoint of the previous evhub layout (JSON body).
#[derive(Debug, Deserialize)]
struct OldCheckpoint {
    offset: Option<String>,
    sequence_number: Option<i64>,
}

fn to_offset_time(at: std::time::SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(at)
}

impl ObjectStoreCheckpointStore {
    /// A store keeping records under `prefix` of `store` (metadata and conditional puts as the
    /// store implements them: Azure Blob, S3 with conditional puts, GCS, memory).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        let describe = store.to_string();
        Self {
            records: Arc::new(ObjectRecords::new(store)),
            prefix,
            describe,
        }
    }

    /// A store keeping records as files under `dir` (fsynced, see the module docs).
    pub fn local(dir: std::path::PathBuf) -> Self {
        let describe = format!("LocalRecords({})", dir.display());
        Self {
            records: Arc::new(LocalRecords::new(dir)),
            prefix: Path::default(),
            describe,
        }
    }

    fn group_path(&self, namespace: &str, hub: &str, group: &str) -> Path {
        self.prefix
            .clone()
            .join(namespace.to_ascii_lowercase())
            .join(hub.to_ascii_lowercase())
            .join(group.to_ascii_lowercase())
    }

    fn ownership_path(&self, o: &Ownership) -> Path {
        self.group_path(
            &o.fully_qualified_namespace,
            &o.event_hub_name,
            &o.consumer_group,
        )
        .join("ownership")
        .join(o.partition_id.to_ascii_lowercase())
    }

    /// The records directly under `dir` (partition ids), and deletes objects of the previous
    /// evhub ownership layout found below it (`<partition>/<version>`).
    async fn partitions_under(&self, dir: &Path) -> azure_core::Result<Vec<(String, Path)>> {
        let depth = dir.parts().count();
        let mut found = Vec::new();
        for path in self.records.list(dir).await? {
            let rest: Vec<String> = path
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_owned())
                .collect();
            match rest.as_slice() {
                [partition] => found.push((partition.clone(), path)),
                [_, version]
                    if version.len() == 20 && version.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    tracing::debug!(%path, "deleting an ownership object of the previous evhub layout");
                    let _ = self.records.delete(&path).await;
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// One claim: `Ok(Some)` when won, `Ok(None)` when another claim won.
    async fn claim_one(&self, requested: &Ownership) -> azure_core::Result<Option<Ownership>> {
        let owner = requested.owner_id.clone().filter(|o| !o.is_empty());
        let mut metadata = BTreeMap::new();
        metadata.insert(OWNER_ID.to_owned(), owner.clone().unwrap_or_default());
        let condition = match &requested.etag {
            None => Condition::Absent,
            Some(etag) => Condition::Matches(etag.to_string()),
        };
        match self
            .records
            .put(&self.ownership_path(requested), &metadata, condition)
            .await?
        {
            Written::Conflict => Ok(None),
            Written::Done {
                etag,
                last_modified,
            } => {
                let mut won = requested.clone();
                won.owner_id = owner;
                won.etag = Some(Etag::from(etag));
                won.last_modified_time = Some(to_offset_time(last_modified));
                Ok(Some(won))
            }
        }
    }

    /// Reads a checkpoint record; one of the previous layout is rewritten in the new one.
    async fn read_checkpoint(
        &self,
        path: &Path,
        record: Record,
    ) -> azure_core::Result<(Option<String>, Option<i64>)> {
        if record.metadata.contains_key(SEQUENCE_NUMBER) || record.metadata.contains_key(OFFSET) {
            let sequence = match record.metadata.get(SEQUENCE_NUMBER) {
                None => None,
                Some(text) => Some(text.trim().parse::<i64>().map_err(|_| {
                    data_error(format!(
                        "checkpoint record `{path}`: `{SEQUENCE_NUMBER}` is not a number: `{text}`"
                    ))
                })?),
            };
            let offset = record
                .metadata
                .get(OFFSET)
                .cloned()
                .filter(|o| !o.is_empty());
            return Ok((offset, sequence));
        }
        if record.body.is_empty() {
            return Err(data_error(format!(
                "checkpoint record `{path}` has neither `{OFFSET}` nor `{SEQUENCE_NUMBER}` metadata"
            )));
        }
        let old: OldCheckpoint = serde_json::from_slice(&record.body).map_err(|e| {
            data_error(format!(
                "checkpoint record `{path}` is corrupt or truncated ({} bytes): {e}",
                record.body.len()
            ))
        })?;
        let mut metadata = BTreeMap::new();
        if let Some(offset) = &old.offset {
            metadata.insert(OFFSET.to_owned(), offset.clone());
        }
        if let Some(sequence) = old.sequence_number {
            metadata.insert(SEQUENCE_NUMBER.to_owned(), sequence.to_string());
        }
        // A concurrent commit wins over the migration (it is newer).
        match self
            .records
            .put(path, &metadata, Condition::Matches(record.etag))
            .await
        {
            Ok(_) => tracing::info!(%path, "checkpoint migrated to Microsoft's processor layout"),
            Err(e) => {
                tracing::warn!(%path, error = %e, "migrating a checkpoint failed; read as is")
            }
        }
        Ok((old.offset, old.sequence_number))
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
        let partitions = self.partitions_under(&dir).await?;
        let reads = partitions.into_iter().map(|(partition, path)| async move {
            let Some(record) = self.records.get(&path).await? else {
                return Ok::<_, azure_core::Error>(None);
            };
            let (offset, sequence_number) = self.read_checkpoint(&path, record).await?;
            Ok(Some(Checkpoint {
                fully_qualified_namespace: namespace.to_owned(),
                event_hub_name: event_hub_name.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: partition,
                offset,
                sequence_number,
            }))
        });
        let found: Vec<Option<Checkpoint>> = futures::stream::iter(reads)
            .buffer_unordered(READ_CONCURRENCY)
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
        let partitions = self.partitions_under(&dir).await?;
        let reads = partitions.into_iter().map(|(partition, path)| async move {
            let Some(record) = self.records.get(&path).await? else {
                return Ok::<_, azure_core::Error>(None);
            };
            let Some(owner) = record.metadata.get(OWNER_ID) else {
                return Err(data_error(format!(
                    "ownership record `{path}` is corrupt or has no `{OWNER_ID}` metadata"
                )));
            };
            Ok(Some(Ownership {
                fully_qualified_namespace: namespace.to_owned(),
                event_hub_name: event_hub_name.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: partition,
                owner_id: Some(owner.clone()).filter(|o| !o.is_empty()),
                etag: Some(Etag::from(record.etag)),
                last_modified_time: Some(to_offset_time(record.last_modified)),
            }))
        });
        let found: Vec<Option<Ownership>> = futures::stream::iter(reads)
            .buffer_unordered(READ_CONCURRENCY)
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
            .join(checkpoint.partition_id.to_ascii_lowercase());
        let mut metadata = BTreeMap::new();
        if let Some(offset) = checkpoint.offset {
            metadata.insert(OFFSET.to_owned(), offset);
        }
        if let Some(sequence) = checkpoint.sequence_number {
            metadata.insert(SEQUENCE_NUMBER.to_owned(), sequence.to_string());
        }
        if metadata.is_empty() {
            return Err(data_error(
                "checkpoint without offset or sequence number".into(),
            ));
        }
        self.records
            .put(&path, &metadata, Condition::Any)
            .await
            .map(|_| ())
    }
}
