//! Bookkeeping of open receivers per (hub, consumer group, partition):
//! exclusive (epoch) readers steal from lower epochs; otherwise at most
//! [`MAX_NON_EPOCH_READERS`] readers share a partition.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio_util::sync::CancellationToken;

/// Limit of readers without an epoch per partition and consumer group.
pub(crate) const MAX_NON_EPOCH_READERS: usize = 5;

type ReaderKey = (String, String, String);

#[derive(Debug)]
struct ReaderEntry {
    id: u64,
    epoch: Option<i64>,
    stolen: CancellationToken,
    reason: Arc<Mutex<String>>,
}

/// Why a new reader may not attach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReaderRefusal {
    #[error("a receiver with a higher epoch of '{existing}' already exists; epoch '{requested}' cannot be used")]
    LowerEpoch { existing: i64, requested: i64 },
    #[error("a receiver with epoch '{existing}' already exists; receivers without an epoch cannot attach")]
    EpochReaderPresent { existing: i64 },
    #[error("exceeded the maximum number of allowed receivers per partition in a consumer group which is {MAX_NON_EPOCH_READERS}")]
    TooManyReaders,
}

/// All open readers.
#[derive(Debug, Default)]
pub(crate) struct ReaderRegistry {
    readers: Mutex<HashMap<ReaderKey, Vec<ReaderEntry>>>,
    next_id: AtomicU64,
}

/// Held by a receiver link while it is open; removes the registration on drop.
#[derive(Debug)]
pub(crate) struct ReaderGuard {
    registry: Arc<ReaderRegistry>,
    key: ReaderKey,
    id: u64,
    /// Cancelled when a higher-epoch reader takes the partition over.
    pub stolen: CancellationToken,
    reason: Arc<Mutex<String>>,
}

impl ReaderGuard {
    /// The description to send with `amqp:link:stolen`.
    pub(crate) fn stolen_reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut readers = self
            .registry
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(list) = readers.get_mut(&self.key) {
            list.retain(|r| r.id != self.id);
            if list.is_empty() {
                readers.remove(&self.key);
            }
        }
    }
}

impl ReaderRegistry {
    pub(crate) fn register(
        self: &Arc<Self>,
        hub: &str,
        group: &str,
        partition: &str,
        epoch: Option<i64>,
    ) -> Result<ReaderGuard, ReaderRefusal> {
        let key = (
            hub.to_ascii_lowercase(),
            group.to_ascii_lowercase(),
            partition.to_string(),
        );
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let list = readers.entry(key.clone()).or_default();
        let highest_epoch = list.iter().filter_map(|r| r.epoch).max();
        match epoch {
            Some(requested) => {
                if let Some(existing) = highest_epoch.filter(|e| *e > requested) {
                    return Err(ReaderRefusal::LowerEpoch {
                        existing,
                        requested,
                    });
                }
                for old in list.drain(..) {
                    let text = match old.epoch {
                        Some(old_epoch) => format!(
                            "New receiver with higher epoch of '{requested}' is created hence current receiver with epoch '{old_epoch}' is getting disconnected."
                        ),
                        None => format!(
                            "New receiver with epoch of '{requested}' is created hence current receiver without an epoch is getting disconnected."
                        ),
                    };
                    *old.reason.lock().unwrap_or_else(|e| e.into_inner()) = text;
                    old.stolen.cancel();
                }
            }
            None => {
                if let Some(existing) = highest_epoch {
                    return Err(ReaderRefusal::EpochReaderPresent { existing });
                }
                if list.len() >= MAX_NON_EPOCH_READERS {
                    return Err(ReaderRefusal::TooManyReaders);
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stolen = CancellationToken::new();
        let reason = Arc::new(Mutex::new(String::new()));
        list.push(ReaderEntry {
            id,
            epoch,
            stolen: stolen.clone(),
            reason: reason.clone(),
        });
        Ok(ReaderGuard {
            registry: self.clone(),
            key,
            id,
            stolen,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_steal_and_limit_applies() {
        let registry = Arc::new(ReaderRegistry::default());
        let plain: Vec<_> = (0..5)
            .map(|_| registry.register("h", "$Default", "0", None).unwrap())
            .collect();
        assert_eq!(
            registry.register("h", "$default", "0", None).unwrap_err(),
            ReaderRefusal::TooManyReaders
        );
        // Another partition or group is independent.
        let _other = registry.register("h", "$Default", "1", None).unwrap();
        let first = registry.register("h", "$Default", "0", Some(1)).unwrap();
        assert!(plain.iter().all(|g| g.stolen.is_cancelled()));
        assert!(!first.stolen.is_cancelled());
        assert!(matches!(
            registry.register("h", "$Default", "0", None),
            Err(ReaderRefusal::EpochReaderPresent { existing: 1 })
        ));
        assert!(matches!(
            registry.register("h", "$Default", "0", Some(0)),
            Err(ReaderRefusal::LowerEpoch {
                existing: 1,
                requested: 0
            })
        ));
        let second = registry.register("h", "$Default", "0", Some(2)).unwrap();
        assert!(first.stolen.is_cancelled());
        assert!(first.stolen_reason().contains("'2'"));
        drop(second);
        drop(first);
        drop(plain);
        // All gone: plain readers may attach again.
        let _again = registry.register("h", "$Default", "0", None).unwrap();
    }
}
