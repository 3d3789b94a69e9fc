//! State shared by a member's handle and its background tasks, and what the tasks hand to
//! `recv`.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};

use evhub_core::{Error, PartitionId, ReceivedEvent};

use super::acquisition::Reading;
use super::options::ProcessorOptions;
use super::store::TrackingStore;

/// What the background tasks send to `recv`.
#[derive(Debug)]
pub(crate) enum Item {
    /// An event of `partition`, read while this member held it as acquisition `generation`.
    Event {
        partition: PartitionId,
        generation: u64,
        event: ReceivedEvent,
    },
    /// Reading one partition failed in a way a retry will not fix (the error names the
    /// partition); the partition is released and `recv` reports the error once.
    PartitionFailed(Error),
    /// The group cannot make progress for now (store or service unreachable for longer than an
    /// ownership expiry); reported once by `recv`, the member keeps retrying.
    Stalled(Error),
    /// The member cannot go on (hub deleted, credentials rejected, a corrupt checkpoint or
    /// ownership record, ...): `recv` reports it now and on every later call.
    Fatal(Error),
}

/// State shared by the member handle and its background tasks.
pub(crate) struct Shared {
    pub hub: Arc<str>,
    pub group: String,
    pub namespace: String,
    pub options: ProcessorOptions,
    pub store: Arc<TrackingStore>,
    /// Partitions currently read by this member, with a generation per acquisition.
    pub reading: Reading,
    pub next_generation: AtomicU64,
    /// Partition reads that failed on the connection since an event was last delivered (see
    /// [`super::supervisor`]).
    pub failures: AtomicU32,
}

impl Shared {
    /// Whether `generation` is still this member's current acquisition of `partition`.
    pub fn is_current(&self, partition: PartitionId, generation: u64) -> bool {
        self.reading
            .lock()
            .map(|r| {
                r.get(&partition)
                    .is_some_and(|a| a.generation == generation)
            })
            .unwrap_or(false)
    }

    /// Whether an event of `generation` may go to the application; records it as handed over.
    pub fn hand_over(&self, partition: PartitionId, generation: u64, sequence: i64) -> bool {
        let Ok(reading) = self.reading.lock() else {
            return false;
        };
        match reading.get(&partition) {
            Some(a) if a.generation == generation => {
                a.progress
                    .handed
                    .store(sequence, std::sync::atomic::Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Partitions currently read.
    pub fn reading(&self) -> Vec<PartitionId> {
        self.reading
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Ends every acquisition (their pumps stop and close their clients).
    pub fn end_all_acquisitions(&self) {
        if let Ok(mut reading) = self.reading.lock() {
            for (_, acquired) in reading.drain() {
                acquired.ended.notify_one();
            }
        }
    }

    pub fn is_reading(&self, partition: PartitionId) -> bool {
        self.reading
            .lock()
            .map(|r| r.contains_key(&partition))
            .unwrap_or(false)
    }
}

/// An error that ends the member, replayed by every later call (errors are not `Clone`; the
/// first report keeps the source, later ones repeat kind, flag and message).
#[derive(Default)]
pub(crate) struct Sticky(Mutex<Option<(evhub_core::ErrorKind, bool, String)>>);

impl Sticky {
    pub fn set(&self, error: &Error) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert_with(|| {
                (
                    error.kind(),
                    error.is_retriable(),
                    error.message().to_owned(),
                )
            });
        }
    }

    pub fn get(&self) -> Option<Error> {
        let slot = self.0.lock().ok()?;
        slot.as_ref().map(|(kind, retriable, message)| {
            Error::new(*kind, message.clone()).with_retriable(*retriable)
        })
    }
}
