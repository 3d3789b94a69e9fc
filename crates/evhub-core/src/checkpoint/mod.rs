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

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::consumer::{CommitOutcome, Consumer};
use crate::error::Result;
pub use crate::event::Checkpoint;
use crate::event::{PartitionId, ReceivedEvent};

/// Tracks received and acknowledged events and yields only gap-free checkpoints.
///
/// Memory is bounded by the number of *gaps* (runs of unacknowledged events), not by the number
/// of events: behind one stuck event, any number of later acknowledged events occupy one range.
/// [`blocked`](Self::blocked) reports partitions held back by an unacknowledged event, so a
/// stuck event is visible instead of silently holding the checkpoint.
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
    hubs: BTreeMap<Arc<str>, BTreeMap<PartitionId, PartitionTrack>>,
}

/// What [`CommitTracker::commit_ready`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Checkpoints stored.
    pub committed: usize,
    /// Checkpoints skipped because their partition had moved to another member.
    pub not_owned: usize,
}

/// A partition whose checkpoint is held back by an unacknowledged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Hub name.
    pub hub: String,
    /// Partition.
    pub partition: PartitionId,
    /// The oldest received event not acknowledged yet.
    pub offset: i64,
    /// Events after it that were acknowledged but cannot be committed until it is.
    pub acked_behind: u64,
}

/// A processed position: offset plus the service's offset string where it has one.
type Position = (i64, Option<String>);

#[derive(Debug, Default)]
struct PartitionTrack {
    /// Received, not yet acknowledged offsets, as inclusive ranges `start -> end`.
    outstanding: BTreeMap<i64, i64>,
    /// Acknowledged offsets above the oldest outstanding one, as ranges `start -> (end, position
    /// of the highest acknowledged event in the range)`. Neighbouring ranges merge when no
    /// outstanding offset lies between them, so offset gaps (Kafka) do not fragment them.
    acked: BTreeMap<i64, AckedRange>,
    acked_behind: u64,
    ready: Option<Position>,
    committed: Option<i64>,
}

impl PartitionTrack {
    fn is_outstanding(&self, offset: i64) -> bool {
        self.outstanding
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &end)| end >= offset)
    }

    fn insert_outstanding(&mut self, offset: i64) {
        // A redelivery of an event already acknowledged stays acknowledged: it must not hold
        // back (or be folded past) the ranges around it.
        let acked = self.ready.as_ref().is_some_and(|(r, _)| offset <= *r)
            || self
                .acked
                .range(..=offset)
                .next_back()
                .is_some_and(|(_, r)| r.end >= offset);
        if acked || self.is_outstanding(offset) {
            return;
        }
        let below = self
            .outstanding
            .range(..offset)
            .next_back()
            .filter(|(_, &end)| end == offset - 1)
            .map(|(&s, _)| s);
        let above = self.outstanding.remove(&(offset + 1));
        match below {
            Some(start) => {
                self.outstanding.insert(start, above.unwrap_or(offset));
            }
            None => {
                self.outstanding.insert(offset, above.unwrap_or(offset));
            }
        }
    }

    /// Removes `offset` from the outstanding ranges; false when it was not outstanding.
    fn remove_outstanding(&mut self, offset: i64) -> bool {
        let Some((&start, &end)) = self.outstanding.range(..=offset).next_back() else {
            return false;
        };
        if end < offset {
            return false;
        }
        self.outstanding.remove(&start);
        if start < offset {
            self.outstanding.insert(start, offset - 1);
        }
        if offset < end {
            self.outstanding.insert(offset + 1, end);
        }
        true
    }

    /// Whether an outstanding offset lies strictly between `low` and `high`.
    fn outstanding_between(&self, low: i64, high: i64) -> bool {
        self.outstanding
            .range(..high)
            .next_back()
            .is_some_and(|(_, &end)| end > low)
    }

    fn insert_acked(&mut self, offset: i64, position: Position) {
        let mut merged = AckedRange {
            end: offset,
            top: position,
            count: 1,
        };
        let mut start = offset;
        if let Some((&s, r)) = self.acked.range(..offset).next_back() {
            if !self.outstanding_between(r.end, offset) {
                if let Some(r) = self.acked.remove(&s) {
                    start = s;
                    merged = merged.merge(r);
                }
            }
        }
        if let Some((&s, _)) = self.acked.range(offset + 1..).next() {
            if !self.outstanding_between(offset, s) {
                if let Some(r) = self.acked.remove(&s) {
                    merged = merged.merge(r);
                }
            }
        }
        self.acked.insert(start, merged);
        self.acked_behind += 1;
    }

    /// Moves acknowledged ranges below the oldest outstanding offset into `ready`.
    fn fold(&mut self) {
        let low = self.outstanding.keys().next().copied().unwrap_or(i64::MAX);
        while let Some(entry) = self.acked.first_entry() {
            if *entry.key() > low {
                break;
            }
            let range = entry.remove();
            self.acked_behind -= range.count;
            self.ready = Some(range.top);
        }
    }
}

#[derive(Debug)]
struct AckedRange {
    end: i64,
    /// Position of the highest acknowledged event in the range.
    top: Position,
    count: u64,
}

impl AckedRange {
    fn merge(self, other: AckedRange) -> AckedRange {
        let (end, top) = if other.end > self.end {
            (other.end, other.top)
        } else {
            (self.end, self.top)
        };
        AckedRange {
            end,
            top,
            count: self.count + other.count,
        }
    }
}

impl CommitTracker {
    /// Creates an empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn track_mut(&mut self, hub: &Arc<str>, partition: PartitionId) -> &mut PartitionTrack {
        if !self.hubs.contains_key(&**hub) {
            self.hubs.insert(hub.clone(), BTreeMap::new());
        }
        match self.hubs.get_mut(&**hub) {
            Some(partitions) => partitions.entry(partition).or_default(),
            None => unreachable!("inserted above"),
        }
    }

    /// Records that `event` was handed to processing. An event received again after it was
    /// acknowledged (a redelivery) counts as acknowledged.
    pub fn received(&mut self, event: &ReceivedEvent) {
        self.track_mut(&event.hub, event.partition)
            .insert_outstanding(event.offset);
    }

    /// Records a whole batch as handed to processing.
    pub fn received_batch(&mut self, events: &[ReceivedEvent]) {
        events.iter().for_each(|e| self.received(e));
    }

    /// Records that processing of `event` succeeded. Unknown or already acknowledged events are
    /// ignored.
    pub fn ack(&mut self, event: &ReceivedEvent) {
        let Some(track) = self
            .hubs
            .get_mut(&*event.hub)
            .and_then(|p| p.get_mut(&event.partition))
        else {
            return;
        };
        if !track.remove_outstanding(event.offset) {
            return;
        }
        track.insert_acked(event.offset, (event.offset, event.service_offset.clone()));
        track.fold();
    }

    /// Records a whole batch as processed.
    pub fn ack_batch(&mut self, events: &[ReceivedEvent]) {
        events.iter().for_each(|e| self.ack(e));
    }

    /// Checkpoints that are safe to commit now: one per partition whose acknowledged prefix grew
    /// since the last call. Call [`CommitTracker::committed`] after committing them.
    pub fn ready(&self) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        for (hub, partitions) in &self.hubs {
            for (&partition, t) in partitions {
                let Some((offset, service_offset)) = &t.ready else {
                    continue;
                };
                if t.committed.is_some_and(|done| *offset <= done) {
                    continue;
                }
                out.push(Checkpoint {
                    hub: hub.to_string(),
                    partition,
                    offset: *offset,
                    service_offset: service_offset.clone(),
                });
            }
        }
        out
    }

    /// Records that `checkpoint` was committed (or skipped because the partition moved), so
    /// [`ready`](Self::ready) stops returning it.
    pub fn committed(&mut self, checkpoint: &Checkpoint) {
        if let Some(track) = self
            .hubs
            .get_mut(checkpoint.hub.as_str())
            .and_then(|p| p.get_mut(&checkpoint.partition))
        {
            track.committed = Some(
                track
                    .committed
                    .map_or(checkpoint.offset, |c| c.max(checkpoint.offset)),
            );
        }
    }

    /// Commits every [ready](Self::ready) checkpoint on `consumer` and records it. A partition
    /// that moved to another member ([`CommitOutcome::NotOwned`]) is forgotten: its new owner
    /// resumes after the group's last stored checkpoint. This is the commit step of a loop that
    /// keeps running through rebalances.
    pub async fn commit_ready(&mut self, consumer: &dyn Consumer) -> Result<CommitSummary> {
        let mut summary = CommitSummary::default();
        for checkpoint in self.ready() {
            match consumer.commit(&checkpoint).await? {
                CommitOutcome::NotOwned => {
                    self.forget(&checkpoint.hub, checkpoint.partition);
                    summary.not_owned += 1;
                }
                _ => {
                    self.committed(&checkpoint);
                    summary.committed += 1;
                }
            }
        }
        Ok(summary)
    }

    /// Forgets a partition (after it was revoked from this member).
    pub fn forget(&mut self, hub: &str, partition: PartitionId) {
        if let Some(partitions) = self.hubs.get_mut(hub) {
            partitions.remove(&partition);
        }
    }

    /// Number of received events not yet acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.hubs
            .values()
            .flat_map(|p| p.values())
            .flat_map(|t| t.outstanding.iter())
            .map(|(s, e)| (e - s + 1) as usize)
            .sum()
    }

    /// Partitions whose checkpoint is held back by an unacknowledged event while later events
    /// were acknowledged: the event to look at, and how many acknowledged events wait behind it.
    pub fn blocked(&self) -> Vec<Blocked> {
        let mut out = Vec::new();
        for (hub, partitions) in &self.hubs {
            for (&partition, t) in partitions {
                if let (Some((&offset, _)), false) =
                    (t.outstanding.iter().next(), t.acked.is_empty())
                {
                    out.push(Blocked {
                        hub: hub.to_string(),
                        partition,
                        offset,
                        acked_behind: t.acked_behind,
                    });
                }
            }
        }
        out
    }
}

/// The checkpoint of the last event of each partition in `events`: committing them marks the
/// whole batch processed (the commit rule), one commit per partition.
pub fn last_per_partition(events: &[ReceivedEvent]) -> Vec<Checkpoint> {
    let mut last: BTreeMap<(&str, PartitionId), &ReceivedEvent> = BTreeMap::new();
    for event in events {
        let slot = last.entry((&event.hub, event.partition)).or_insert(event);
        if event.offset > slot.offset {
            *slot = event;
        }
    }
    last.values().map(|e| e.checkpoint()).collect()
}

#[cfg(test)]
mod tests;
