//! Records as files of a local directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::error::ErrorKind as AzureKind;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{data_error, Condition, Record, Records, Written};

/// Records as files in a local directory: each file holds the record's metadata as JSON and a
/// version number (its ETag). Writes go to a temporary file that is fsynced and renamed over
/// the record, and the directory is fsynced, so a crash leaves the old record or the new one,
/// never a torn one. Conditional writes hold a lock file (`<record>.lock`, created exclusively)
/// while they compare and write; a lock older than [`STALE_LOCK`] (a crashed writer) is broken.
#[derive(Debug)]
pub(crate) struct LocalRecords {
    root: PathBuf,
}

/// A lock held this long belongs to a writer that died.
const STALE_LOCK: Duration = Duration::from_secs(30);
/// How long a writer waits for another writer's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct LocalFile {
    version: u64,
    metadata: BTreeMap<String, String>,
}

impl LocalRecords {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn file(&self, path: &Path) -> PathBuf {
        let mut file = self.root.clone();
        for part in path.parts() {
            file.push(part.as_ref());
        }
        file
    }
}

fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> azure_core::Error {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => AzureKind::Credential,
        _ => AzureKind::Io,
    };
    azure_core::Error::with_error(
        kind,
        e,
        format!("checkpoint store: {what} {}", path.display()),
    )
}

fn read_local(file: &std::path::Path) -> azure_core::Result<Option<Record>> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory here is a partition's ownership record of the previous evhub layout.
        Err(_) if file.is_dir() => return Ok(None),
        Err(e) => return Err(io_error("reading", file, e)),
    };
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match serde_json::from_slice::<LocalFile>(&bytes) {
        Ok(local) => Ok(Some(Record {
            metadata: local.metadata,
            etag: local.version.to_string(),
            last_modified: modified,
            body: Vec::new(),
        })),
        // Not a record of this layout: a checkpoint of the previous evhub layout (JSON with
        // other fields) is migrated by the caller; anything else is reported there.
        Err(_) => Ok(Some(Record {
            metadata: BTreeMap::new(),
            etag: format!("body-{}", bytes.len()),
            last_modified: modified,
            body: bytes,
        })),
    }
}

fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes an ownership directory of the previous evhub layout (`<partition>/<version>`
/// files) so the record can take its name.
fn clear_old_layout(file: &std::path::Path) -> std::io::Result<()> {
    if file.is_dir() {
        for entry in std::fs::read_dir(file)? {
            let entry = entry?;
            let name = entry.file_name();
            let old_version = name
                .to_str()
                .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()));
            if !old_version {
                return Err(std::io::Error::other(format!(
                    "unexpected entry {} in an ownership directory of the previous layout",
                    entry.path().display()
                )));
            }
            std::fs::remove_file(entry.path())?;
        }
        std::fs::remove_dir(file)?;
    }
    Ok(())
}

fn write_local(
    file: &std::path::Path,
    metadata: &BTreeMap<String, String>,
    condition: &Condition,
) -> azure_core::Result<Written> {
    let dir = file
        .parent()
        .ok_or_else(|| data_error(format!("record path {} has no parent", file.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    clear_old_layout(file).map_err(|e| io_error("migrating", file, e))?;
    let lock = file.with_extension("lock");
    let _guard = LockFile::acquire(&lock)?;
    let current = read_local(file)?;
    let allowed = match (condition, &current) {
        (Condition::Any, _) => true,
        (Condition::Absent, current) => current.is_none(),
        (Condition::Matches(etag), Some(current)) => &current.etag == etag,
        (Condition::Matches(_), None) => false,
    };
    if !allowed {
        return Ok(Written::Conflict);
    }
    let version = current
        .and_then(|c| c.etag.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let body = serde_json::to_vec(&LocalFile {
        version,
        metadata: metadata.clone(),
    })
    .map_err(|e| data_error(format!("encoding record: {e}")))?;
    let temp = file.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(&body)?;
        out.sync_all()?;
        std::fs::rename(&temp, file)?;
        sync_dir(dir)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error("writing", file, e));
    }
    Ok(Written::Done {
        etag: version.to_string(),
        last_modified: SystemTime::now(),
    })
}

/// An exclusive lock file, removed on drop.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &std::path::Path) -> azure_core::Result<Self> {
        let start = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return Ok(Self(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if start.elapsed() > LOCK_WAIT {
                        return Err(azure_core::Error::with_message(
                            AzureKind::Io,
                            format!("checkpoint store: lock {} is held", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(io_error("locking", path, e)),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn list_local(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<Path>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_local(root, &path, out)?;
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".lock") || name.contains(".tmp-") {
            continue;
        }
        if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(Path::from_iter(parts));
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> azure_core::Result<T> + Send + 'static,
) -> azure_core::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        azure_core::Error::with_message(AzureKind::Other, format!("checkpoint store task: {e}"))
    })?
}

#[async_trait]
impl Records for LocalRecords {
    async fn list(&self, prefix: &Path) -> azure_core::Result<Vec<Path>> {
        let root = self.root.clone();
        let dir = self.file(prefix);
        blocking(move || {
            let mut out = Vec::new();
            list_local(&root, &dir, &mut out).map_err(|e| io_error("listing", &dir, e))?;
            Ok(out)
        })
        .await
    }

    async fn get(&self, path: &Path) -> azure_core::Result<Option<Record>> {
        let file = self.file(path);
        blocking(move || read_local(&file)).await
    }

    async fn put(
        &self,
        path: &Path,
        metadata: &BTreeMap<String, String>,
        condition: Condition,
    ) -> azure_core::Result<Written> {
        let file = self.file(path);
        let metadata = metadata.clone();
        blocking(move || write_local(&file, &metadata, &condition)).await
    }

    async fn delete(&self, path: &Path) -> azure_core::Result<()> {
        let file = self.file(path);
        blocking(move || match std::fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting", &file, e)),
        })
        .await
    }
}
