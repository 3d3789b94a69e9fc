//! Records as objects of an `object_store` store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use super::{store_error, Condition, Record, Records, Written};

/// Records as objects with user metadata (`x-ms-meta-*` on Azure Blob, `x-amz-meta-*` on S3,
/// `x-goog-meta-*` on GCS) and conditional puts on the object's ETag.
#[derive(Debug)]
pub(crate) struct ObjectRecords {
    store: Arc<dyn ObjectStore>,
}

impl ObjectRecords {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Records for ObjectRecords {
    async fn list(&self, prefix: &Path) -> azure_core::Result<Vec<Path>> {
        let metas: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| store_error("listing records", e))?;
        Ok(metas.into_iter().map(|m| m.location).collect())
    }

    async fn get(&self, path: &Path) -> azure_core::Result<Option<Record>> {
        let result = match self.store.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("reading a record", e)),
        };
        let metadata = result
            .attributes
            .iter()
            .filter_map(|(attribute, value)| match attribute {
                Attribute::Metadata(key) => {
                    Some((key.to_ascii_lowercase(), value.as_ref().to_owned()))
                }
                _ => None,
            })
            .collect();
        let etag = result.meta.e_tag.clone().unwrap_or_default();
        let last_modified = SystemTime::from(result.meta.last_modified);
        let body = result
            .bytes()
            .await
            .map_err(|e| store_error("reading a record", e))?
            .to_vec();
        Ok(Some(Record {
            metadata,
            etag,
            last_modified,
            body,
        }))
    }

    async fn put(
        &self,
        path: &Path,
        metadata: &BTreeMap<String, String>,
        condition: Condition,
    ) -> azure_core::Result<Written> {
        let mut attributes = Attributes::new();
        for (key, value) in metadata {
            attributes.insert(
                Attribute::Metadata(key.clone().into()),
                value.clone().into(),
            );
        }
        let conditional_update = matches!(condition, Condition::Matches(_));
        let mode = match condition {
            Condition::Any => PutMode::Overwrite,
            Condition::Absent => PutMode::Create,
            Condition::Matches(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            attributes,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::default(), options)
            .await
        {
            Ok(put) => Ok(Written::Done {
                etag: put.e_tag.unwrap_or_default(),
                last_modified: SystemTime::now(),
            }),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Written::Conflict),
            // `If-Match` on a record deleted meanwhile.
            Err(object_store::Error::NotFound { .. }) if conditional_update => {
                Ok(Written::Conflict)
            }
            Err(e) => Err(store_error("writing a record", e)),
        }
    }

    async fn delete(&self, path: &Path) -> azure_core::Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("deleting a record", e)),
        }
    }
}
