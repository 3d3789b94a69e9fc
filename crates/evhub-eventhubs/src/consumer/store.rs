//! The checkpoint-store wrapper between the SDK's processor and the configured store: it
//! remembers what this member holds (commits check it, `close` relinquishes it), keeps the last
//! ownership listing for cheap re-checks, and records the last store failure with its evhub
//! kind so the balancer can tell a corrupt record from an unreachable store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_messaging_eventhubs::models::{Checkpoint as SdkCheckpoint, Ownership};
use azure_messaging_eventhubs::CheckpointStore;
use evhub_core::{Error, PartitionId, Result};
use tracing::{debug, warn};

use super::acquisition::Reading;
use crate::error::from_core;

/// Where the group's records live: namespace, hub, group.
#[derive(Debug, Clone)]
pub(crate) struct GroupKey {
    pub namespace: String,
    pub hub: String,
    pub group: String,
}

pub(crate) struct TrackingStore {
    pub inner: Arc<dyn CheckpointStore>,
    key: GroupKey,
    /// How old a cached ownership listing may be for a re-check.
    recheck: Duration,
    held: Mutex<HashMap<String, Ownership>>,
    /// The processor's owner id, learned from its claims.
    owner: Mutex<Option<String>>,
    /// The last ownership listing and when it was read.
    snapshot: Mutex<Option<(Instant, Vec<Ownership>)>>,
    /// The last store failure, mapped; taken by the balancer.
    last_error: Mutex<Option<Error>>,
    /// The member's current acquisitions; listings that name another owner end them.
    reading: Reading,
    /// Sequence numbers of the last checkpoint listing, per partition id.
    listed: Mutex<HashMap<String, i64>>,
    /// Undecodable events to start after, per partition id (see [`crate::poison`]).
    skips: Mutex<HashMap<String, i64>>,
}

impl TrackingStore {
    pub fn new(
        inner: Arc<dyn CheckpointStore>,
        key: GroupKey,
        recheck: Duration,
        reading: Reading,
    ) -> Self {
        Self {
            reading,
            listed: Mutex::new(HashMap::new()),
            skips: Mutex::new(HashMap::new()),
            inner,
            key,
            recheck,
            held: Mutex::new(HashMap::new()),
            owner: Mutex::new(None),
            snapshot: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// The store failure recorded since the last call, if any.
    pub fn take_error(&self) -> Option<Error> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    fn record<T>(&self, what: &str, result: azure_core::Result<T>) -> azure_core::Result<T> {
        if let Err(e) = &result {
            let mapped = from_core(what, clone_core(e));
            if let Ok(mut slot) = self.last_error.lock() {
                // A permanent failure is the one to report; keep it over later transient ones.
                if slot.as_ref().is_none_or(|old| old.is_retriable()) {
                    *slot = Some(mapped);
                }
            }
        }
        result
    }

    /// The sequence number of `partition`'s checkpoint in the last listing.
    pub fn listed_checkpoint(&self, partition: PartitionId) -> Option<i64> {
        self.listed
            .lock()
            .ok()?
            .get(&partition.to_string())
            .copied()
    }

    /// Makes the processor start `partition` after `sequence` (an undecodable event) when the
    /// group's checkpoint is older. Nothing is written: the group's checkpoint moves only with
    /// the application's commits.
    pub fn skip_through(&self, partition: PartitionId, sequence: i64) {
        if let Ok(mut skips) = self.skips.lock() {
            let entry = skips.entry(partition.to_string()).or_insert(sequence);
            *entry = (*entry).max(sequence);
        }
    }

    /// Forgets the owner id: the next processor (a new connection) has its own.
    pub fn forget_owner(&self) {
        if let Ok(mut owner) = self.owner.lock() {
            *owner = None;
        }
    }

    fn owner(&self) -> Option<String> {
        self.owner.lock().ok().and_then(|o| o.clone())
    }

    async fn listing(&self, fresh: bool) -> Result<Vec<Ownership>> {
        let cached = self
            .snapshot
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .filter(|(at, _)| !fresh && at.elapsed() < self.recheck)
            .map(|(_, all)| all);
        match cached {
            Some(all) => Ok(all),
            None => self
                .list_ownerships(&self.key.namespace, &self.key.hub, &self.key.group)
                .await
                .map_err(|e| from_core("listing partition ownership", e)),
        }
    }

    /// Partitions the store currently names this member the owner of.
    pub async fn owned_in_store(&self) -> Result<Vec<PartitionId>> {
        let Some(owner) = self.owner() else {
            return Ok(Vec::new());
        };
        let all = self.listing(true).await?;
        Ok(all
            .iter()
            .filter(|o| o.owner_id.as_deref() == Some(&owner))
            .filter_map(|o| o.partition_id.parse().ok())
            .collect())
    }

    /// Whether the store names this member the owner of `partition` (a listing at most one
    /// re-check interval old unless `fresh`). An unreachable store answers `true`: the balancer
    /// handles ownership loss, and a transient outage must not stop reading.
    pub async fn is_owner(&self, partition: PartitionId, fresh: bool) -> bool {
        let Some(owner) = self.owner() else {
            return false;
        };
        match self.listing(fresh).await {
            Ok(all) => all.iter().any(|o| {
                o.partition_id == partition.to_string() && o.owner_id.as_deref() == Some(&owner)
            }),
            Err(e) => {
                debug!(error = %e, "ownership check failed");
                true
            }
        }
    }

    pub fn holds(&self, partition: PartitionId) -> bool {
        self.held
            .lock()
            .map(|h| h.contains_key(&partition.to_string()))
            .unwrap_or(false)
    }

    /// Gives up every held partition so others can claim it at once.
    pub async fn relinquish(&self) {
        let held: Vec<Ownership> = self
            .held
            .lock()
            .map(|mut h| h.drain().map(|(_, o)| o).collect())
            .unwrap_or_default();
        if held.is_empty() {
            return;
        }
        let released: Vec<Ownership> = held
            .into_iter()
            .map(|mut o| {
                o.owner_id = None;
                o
            })
            .collect();
        match self.inner.claim_ownership(&released).await {
            Ok(done) => debug!(partitions = done.len(), "partition ownership relinquished"),
            Err(e) => {
                warn!(error = %e, "relinquishing partition ownership failed; it expires instead")
            }
        }
    }
}

impl TrackingStore {
    /// Ends every acquisition older than the listing `all` (read from `started` on) whose
    /// partition the listing gives to another member.
    fn end_taken_over(&self, all: &[Ownership], started: Instant) {
        let Some(me) = self.owner() else { return };
        let Ok(mut reading) = self.reading.lock() else {
            return;
        };
        if reading.is_empty() {
            return;
        }
        for o in all {
            let other = o
                .owner_id
                .as_deref()
                .is_some_and(|id| !id.is_empty() && id != me);
            if !other {
                continue;
            }
            let Ok(partition) = o.partition_id.parse::<PartitionId>() else {
                continue;
            };
            if reading.get(&partition).is_some_and(|a| a.at < started) {
                debug!(partition, owner = ?o.owner_id, "partition taken over by another member");
                if let Some(acquired) = reading.remove(&partition) {
                    acquired.ended.notify_one();
                }
            }
        }
    }
}

/// `azure_core::Error` is not `Clone`: keep kind and message for the mapped copy.
fn clone_core(e: &azure_core::Error) -> azure_core::Error {
    azure_core::Error::with_message(e.kind().clone(), e.to_string())
}

#[async_trait]
impl CheckpointStore for TrackingStore {
    async fn claim_ownership(
        &self,
        ownerships: &[Ownership],
    ) -> azure_core::Result<Vec<Ownership>> {
        if let Some(owner) = ownerships.iter().find_map(|o| o.owner_id.clone()) {
            if let Ok(mut known) = self.owner.lock() {
                known.get_or_insert(owner);
            }
        }
        // Records are named after the configured namespace, whatever the SDK calls it.
        let ownerships: Vec<Ownership> = ownerships
            .iter()
            .map(|o| Ownership {
                fully_qualified_namespace: self.key.namespace.clone(),
                ..o.clone()
            })
            .collect();
        let claimed = self.record(
            "claiming partition ownership",
            self.inner.claim_ownership(&ownerships).await,
        )?;
        if let Ok(mut held) = self.held.lock() {
            held.clear();
            for o in claimed.iter().filter(|o| o.owner_id.is_some()) {
                held.insert(o.partition_id.clone(), o.clone());
            }
        }
        Ok(claimed)
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<SdkCheckpoint>> {
        let _ = namespace;
        let mut all = self.record(
            "listing checkpoints",
            self.inner
                .list_checkpoints(&self.key.namespace, event_hub_name, consumer_group)
                .await,
        )?;
        if let Ok(mut listed) = self.listed.lock() {
            listed.clear();
            for c in &all {
                if let Some(sequence) = c.sequence_number {
                    listed.insert(c.partition_id.clone(), sequence);
                }
            }
        }
        let skips = self.skips.lock().map(|s| s.clone()).unwrap_or_default();
        for (partition, skip) in skips {
            let stored = all.iter_mut().find(|c| c.partition_id == partition);
            let behind = stored
                .as_ref()
                .is_none_or(|c| c.sequence_number.is_none_or(|s| s < skip));
            if !behind {
                continue;
            }
            let start_after = SdkCheckpoint {
                fully_qualified_namespace: self.key.namespace.clone(),
                event_hub_name: event_hub_name.to_owned(),
                consumer_group: consumer_group.to_owned(),
                partition_id: partition.clone(),
                // No offset: the processor starts after the sequence number.
                offset: None,
                sequence_number: Some(skip),
            };
            match stored {
                Some(c) => *c = start_after,
                None => all.push(start_after),
            }
        }
        Ok(all)
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        let _ = namespace;
        let started = Instant::now();
        let all = self.record(
            "listing partition ownership",
            self.inner
                .list_ownerships(&self.key.namespace, event_hub_name, consumer_group)
                .await,
        )?;
        self.end_taken_over(&all, started);
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = Some((Instant::now(), all.clone()));
        }
        Ok(all)
    }

    async fn update_checkpoint(&self, checkpoint: SdkCheckpoint) -> azure_core::Result<()> {
        self.inner
            .update_checkpoint(SdkCheckpoint {
                fully_qualified_namespace: self.key.namespace.clone(),
                ..checkpoint
            })
            .await
    }
}
