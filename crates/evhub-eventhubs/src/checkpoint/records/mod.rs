//! Zero-length records with metadata and an ETag — what Microsoft's processors keep as blobs —
//! on any object store, and on a local directory (which has neither metadata nor conditional
//! updates in `object_store`, so it gets its own implementation).
//!
//! Failures are `azure_core` errors (what the SDK's `CheckpointStore` trait speaks) whose kind
//! says what went wrong: `Io` for an unreachable store (retriable), `DataConversion` for a
//! record that cannot be read (a corrupt or truncated file, metadata that is not a number),
//! `Credential` for refused credentials, `Other` for anything permanent.

mod local;
mod object;

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use azure_core::error::ErrorKind as AzureKind;
use object_store::path::Path;

pub(crate) use local::LocalRecords;
pub(crate) use object::ObjectRecords;

/// One record: its metadata, version and last modification.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub metadata: BTreeMap<String, String>,
    pub etag: String,
    pub last_modified: SystemTime,
    /// The record's body, when it has one (only records of the previous evhub layout do).
    pub body: Vec<u8>,
}

/// The condition of a write.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// Unconditional.
    Any,
    /// Only when no record exists (`If-None-Match: *`).
    Absent,
    /// Only when the record still has this ETag (`If-Match`).
    Matches(String),
}

/// Outcome of a conditional write.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    Done {
        etag: String,
        last_modified: SystemTime,
    },
    /// The condition failed: another writer got there first.
    Conflict,
}

#[async_trait]
pub(crate) trait Records: Send + Sync + std::fmt::Debug {
    /// Names of the records directly or indirectly under `prefix`.
    async fn list(&self, prefix: &Path) -> azure_core::Result<Vec<Path>>;
    /// The record at `path`, if any.
    async fn get(&self, path: &Path) -> azure_core::Result<Option<Record>>;
    /// Writes a zero-length record with `metadata` under `condition`.
    async fn put(
        &self,
        path: &Path,
        metadata: &BTreeMap<String, String>,
        condition: Condition,
    ) -> azure_core::Result<Written>;
    /// Removes a record (absent is fine).
    async fn delete(&self, path: &Path) -> azure_core::Result<()>;
}

pub(crate) fn store_error(what: &str, e: object_store::Error) -> azure_core::Error {
    let kind = match &e {
        object_store::Error::Unauthenticated { .. }
        | object_store::Error::PermissionDenied { .. } => AzureKind::Credential,
        // A missing container or bucket, an unsupported operation (e.g. S3 without
        // conditional puts): retrying will not help.
        object_store::Error::NotFound { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::NotImplemented { .. } => AzureKind::Other,
        _ => AzureKind::Io,
    };
    azure_core::Error::with_error(kind, e, format!("checkpoint store: {what}"))
}

pub(crate) fn data_error(what: String) -> azure_core::Error {
    azure_core::Error::with_message(AzureKind::DataConversion, what)
}
