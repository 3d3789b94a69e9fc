//! Checkpoint stores for consumer groups, chosen by the `checkpoint_store` URL in config.
//!
//! | `checkpoint_store`                          | where records live                         |
//! |---------------------------------------------|--------------------------------------------|
//! | absent, `memory`, `memory://<name>`         | this process (shared by its connections)    |
//! | `file:///var/lib/evhub`                     | a local directory                          |
//! | `az://container/prefix`, `https://<account>.blob.core.windows.net/container` | Azure Blob Storage |
//! | `s3://bucket/prefix`                        | Amazon S3 (or compatible)                  |
//! | `gs://bucket/prefix`                        | Google Cloud Storage                       |
//!
//! Records follow the layout of Microsoft's processors (see [`ObjectStoreCheckpointStore`]),
//! so evhub members and `EventProcessorClient`s share a consumer group on the same container.
//! On S3 set `aws_conditional_put = etag` (conditional puts are how claims are decided).
//!
//! `checkpoint_store_options` are the `object_store` builder keys of that service (e.g.
//! `azure_storage_account_name`, `azure_storage_account_key`, `azure_storage_endpoint`,
//! `aws_region`, `google_service_account`); an unknown key is a config error naming it.

mod object;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use azure_messaging_eventhubs::CheckpointStore;
use evhub_core::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};

pub use object::{ObjectStoreCheckpointStore, OFFSET, OWNER_ID, SEQUENCE_NUMBER};

/// Opens the checkpoint store `url` names with builder `options`.
pub fn open_checkpoint_store(
    url: Option<&str>,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn CheckpointStore>> {
    Ok(Arc::new(open_object_checkpoint_store(url, options)?))
}

/// Like [`open_checkpoint_store`], returning the concrete store.
pub fn open_object_checkpoint_store(
    url: Option<&str>,
    options: &BTreeMap<String, String>,
) -> Result<ObjectStoreCheckpointStore> {
    let url = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or("memory");
    if url == "memory" || url.starts_with("memory:") {
        reject_options(url, options)?;
        return Ok(ObjectStoreCheckpointStore::new(
            process_memory_store(url),
            Path::default(),
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| {
        Error::config(format!("checkpoint_store `{url}` is not a URL: {e}")).with_source(e)
    })?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|e| {
        Error::config(format!(
            "checkpoint_store `{url}`: unsupported store URL: {e}"
        ))
        .with_source(e)
    })?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => {
            reject_options(url, options)?;
            let dir = parsed.to_file_path().map_err(|_| {
                Error::config(format!("checkpoint_store `{url}` is not a local path"))
            })?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::config(format!(
                    "checkpoint_store: cannot create directory {}: {e}",
                    dir.display()
                ))
                .with_source(e)
            })?;
            // A directory of files, fsynced (object_store's local store has neither metadata
            // nor conditional updates).
            return Ok(ObjectStoreCheckpointStore::local(dir));
        }
        ObjectStoreScheme::Memory => process_memory_store(url),
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = object_store::azure::MicrosoftAzureBuilder::new().with_url(url);
            for (key, value) in options {
                let parsed_key = object_store::azure::AzureConfigKey::from_str(key)
                    .map_err(|_| unknown_key(url, key))?;
                builder = builder.with_config(parsed_key, value);
            }
            Arc::new(builder.build().map_err(|e| store_config_error(url, e))?)
        }
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = object_store::aws::AmazonS3Builder::new().with_url(url);
            for (key, value) in options {
                let parsed_key = object_store::aws::AmazonS3ConfigKey::from_str(key)
                    .map_err(|_| unknown_key(url, key))?;
                builder = builder.with_config(parsed_key, value);
            }
            Arc::new(builder.build().map_err(|e| store_config_error(url, e))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new().with_url(url);
            for (key, value) in options {
                let parsed_key = object_store::gcp::GoogleConfigKey::from_str(key)
                    .map_err(|_| unknown_key(url, key))?;
                builder = builder.with_config(parsed_key, value);
            }
            Arc::new(builder.build().map_err(|e| store_config_error(url, e))?)
        }
        other => {
            return Err(Error::config(format!(
                "checkpoint_store `{url}`: {other:?} stores cannot hold checkpoints \
                 (no conditional writes); use file://, az://, s3://, gs:// or memory"
            )))
        }
    };
    Ok(ObjectStoreCheckpointStore::new(store, prefix))
}

fn reject_options(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    match options.keys().next() {
        Some(key) => Err(unknown_key(url, key)),
        None => Ok(()),
    }
}

fn unknown_key(url: &str, key: &str) -> Error {
    Error::config(format!(
        "checkpoint_store_options: unknown key `{key}` for checkpoint store `{url}`"
    ))
}

fn store_config_error(url: &str, e: object_store::Error) -> Error {
    // object_store errors name keys and paths, never secret values.
    Error::config(format!("checkpoint_store `{url}`: {e}")).with_source(e)
}

/// One in-memory object store per name, shared by every connection of this process, so that
/// members of a group in one process see each other's ownership and checkpoints.
fn process_memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = match stores.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let key = match name {
        "memory" | "memory:" | "memory://" => "memory://".to_owned(),
        other => other.to_owned(),
    };
    stores
        .entry(key)
        .or_insert_with(|| Arc::new(object_store::memory::InMemory::new()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_option_keys_are_named() {
        let mut options = BTreeMap::new();
        options.insert("azure_storage_acount_name".to_owned(), "x".to_owned());
        let e = open_object_checkpoint_store(Some("az://container/prefix"), &options).unwrap_err();
        assert_eq!(e.kind(), evhub_core::ErrorKind::Config);
        assert!(e.to_string().contains("azure_storage_acount_name"), "{e}");
        let e = open_object_checkpoint_store(Some("memory"), &options).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let none = BTreeMap::new();
        for url in ["not a url", "ftp://host/x", "http://example.invalid/x"] {
            let e = open_object_checkpoint_store(Some(url), &none).unwrap_err();
            assert_eq!(e.kind(), evhub_core::ErrorKind::Config, "{url}: {e}");
        }
    }
}
