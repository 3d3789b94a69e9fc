//! Checkpoints and the commit tracker that keeps commits gap-free.
//!
//! # The commit rule
//!
//! Committing the checkpoint of an event marks **that event and every earlier event of the same
//! partition** as processed. Committing event 7 after event 5 failed silently skips event 5 —
//! the classic at-least-once data-loss trap. [`CommitTracker`] avoids it: record each received
//! event, acknowledge it when its processing succeeded, and commit only what
//! [`CommitTracker::ready`] returns — the highest position per partition below which *every*
//! received event was acknowledged. A failed event blocks its partition's checkpoint until it is
//! acknowledged (for example after a retry or after writing it to a dead-letter hub).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{PartitionId, ReceivedEvent};

/// A processed position in one partition of a hub. Serializable, so it can be stored outside evhub.
///
/// `offset` is the offset of the last processed event; backends translate it to their own
/// convention (Kafka commits `offset + 1`) internally.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hub (topic) name.
    pub hub: String,
    /// Partition.
    pub partition: PartitionId,
    /// Offset of the last processed event.
    pub offset: i64,
    /// The service's offset string for that event, where the service has one (Event Hubs).
    pub service_offset: Option<String>,
}

/// Tracks received and acknowledged events and yields only gap-free checkpoints.
///
/// ```
/// use evhub_core::{CommitTracker, ReceivedEvent};
/// # fn event(offset: i64) -> ReceivedEvent {
/// #     ReceivedEvent { hub: "h".into(), partition: 0, offset, service_offset: None,
/// #         enqueued_at: None, key: None, payload: Default::default(), headers: vec![] }
/// # }
/// let mut tracker = CommitTracker::new();
/// let (e5, e6) = (event(5), event(6));
/// tracker.received(&e5);
/// tracker.received(&e6);
/// tracker.ack(&e6);                  // 6 succeeded, 5 still pending
/// assert!(tracker.ready().is_empty()); // nothing safe to commit yet
/// tracker.ack(&e5);
/// assert_eq!(tracker.ready()[0].offset, 6);
/// ```
#[derive(Debug, Default)]
pub struct CommitTracker {
    partitions: BTreeMap<(String, PartitionId), PartitionTrack>,
}

#[derive(Debug, Default)]
struct PartitionTrack {
    pending: BTreeSet<i64>,
    acked: BTreeMap<i64, Checkpoint>,
    ready: Option<Checkpoint>,
    committed: Option<i64>,
}

impl CommitTracker {
    /// Creates an empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `event` was handed to processing.
    pub fn received(&mut self, event: &ReceivedEvent) {
        let track = self
            .partitions
            .entry((event.hub.clone(), event.partition))
            .or_default();
        track.pending.insert(event.offset);
    }

    /// Records that processing of `event` succeeded.
    pub fn ack(&mut self, event: &ReceivedEvent) {
        let Some(track) = self
            .partitions
            .get_mut(&(event.hub.clone(), event.partition))
        else {
            return;
        };
        if !track.pending.contains(&event.offset) {
            return;
        }
        track.acked.insert(event.offset, event.checkpoint());
        // Advance over the acknowledged prefix of the pending set.
        while let Some(&first) = track.pending.first() {
            let Some(checkpoint) = track.acked.remove(&first) else {
                break;
            };
            track.pending.remove(&first);
            track.ready = Some(checkpoint);
        }
    }

    /// Checkpoints that are safe to commit now: one per partition whose acknowledged prefix grew
    /// since the last call. Call [`CommitTracker::committed`] after committing them.
    pub fn ready(&self) -> Vec<Checkpoint> {
        self.partitions
            .values()
            .filter_map(|t| match (&t.ready, t.committed) {
                (Some(cp), Some(done)) if cp.offset <= done => None,
                (Some(cp), _) => Some(cp.clone()),
                (None, _) => None,
            })
            .collect()
    }

    /// Records that `checkpoint` was committed, so [`ready`](Self::ready) stops returning it.
    pub fn committed(&mut self, checkpoint: &Checkpoint) {
        if let Some(track) = self
            .partitions
            .get_mut(&(checkpoint.hub.clone(), checkpoint.partition))
        {
            track.committed = Some(
                track
                    .committed
                    .map_or(checkpoint.offset, |c| c.max(checkpoint.offset)),
            );
        }
    }

    /// Forgets a partition (after it was revoked from this member).
    pub fn forget(&mut self, hub: &str, partition: PartitionId) {
        self.partitions.remove(&(hub.to_owned(), partition));
    }

    /// Number of received events not yet acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|t| t.pending.len() - t.acked.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(partition: PartitionId, offset: i64) -> ReceivedEvent {
        ReceivedEvent {
            hub: "h".into(),
            partition,
            offset,
            service_offset: Some(format!("svc-{offset}")),
            enqueued_at: None,
            key: None,
            payload: Default::default(),
            headers: vec![],
        }
    }

    #[test]
    fn failed_event_blocks_later_commits() {
        let mut t = CommitTracker::new();
        let events: Vec<_> = (0..5).map(|o| ev(0, o)).collect();
        events.iter().for_each(|e| t.received(e));
        t.ack(&events[0]);
        t.ack(&events[2]);
        t.ack(&events[3]);
        let ready = t.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].offset, 0);
        t.committed(&ready[0]);
        assert!(t.ready().is_empty());
        assert_eq!(t.in_flight(), 2);
        t.ack(&events[1]);
        let ready = t.ready();
        assert_eq!(ready[0].offset, 3);
    }

    #[test]
    fn partitions_are_independent_and_service_offset_kept() {
        let mut t = CommitTracker::new();
        let (a, b) = (ev(0, 10), ev(1, 20));
        t.received(&a);
        t.received(&b);
        t.ack(&b);
        let ready = t.ready();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].partition, 1);
        assert_eq!(ready[0].service_offset.as_deref(), Some("svc-20"));
    }

    #[test]
    fn ack_of_unknown_event_is_ignored() {
        let mut t = CommitTracker::new();
        t.ack(&ev(0, 3));
        assert!(t.ready().is_empty());
        assert_eq!(t.in_flight(), 0);
    }
}
