//! Memory consumer-group member and partition reader.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::consumer::{CommitOutcome, Consumer, PartitionReader};
use crate::error::{Error, Result};
use crate::event::Checkpoint;
use crate::event::{PartitionId, ReceivedEvent};
use crate::group;
use crate::position::{InitialPosition, StartPosition};
use crate::telemetry;

use super::group::GroupState;
use super::hub::{lock, HubState};

/// Events copied from a partition per lock; bounds the member's local buffer.
const FETCH_MAX: usize = 256;

#[derive(Debug, Default)]
struct MemberState {
    generation: u64,
    partitions: Vec<PartitionId>,
    positions: BTreeMap<PartitionId, i64>,
    buffer: VecDeque<ReceivedEvent>,
    next_partition: usize,
}

#[derive(Debug)]
pub(crate) struct MemoryConsumer {
    hub: Arc<HubState>,
    group_name: String,
    group: Arc<GroupState>,
    member: u64,
    initial: InitialPosition,
    state: Mutex<MemberState>,
    closed: AtomicBool,
    close_notify: Notify,
}

impl MemoryConsumer {
    pub fn join(hub: Arc<HubState>, group_name: String, initial: InitialPosition) -> Self {
        let group = hub.group(&group_name);
        let member = group.join();
        Self {
            hub,
            group_name,
            group,
            member,
            initial,
            state: Mutex::new(MemberState {
                generation: u64::MAX,
                ..MemberState::default()
            }),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
        }
    }

    /// Applies a rebalance: keeps positions (and read-ahead events) of partitions still owned,
    /// starts new ones at the group's checkpoint, and drops buffered events of revoked ones.
    fn sync(&self, st: &mut MemberState) -> Result<()> {
        if self.group.generation() == st.generation {
            return Ok(());
        }
        let assignment = self.group.assignment(self.member);
        st.buffer
            .retain(|e| assignment.partitions.contains(&e.partition));
        let mut positions = BTreeMap::new();
        for &p in &assignment.partitions {
            let position = match st.positions.get(&p) {
                Some(pos) => *pos,
                None => {
                    let start = StartPosition::from(self.initial);
                    let resolved = self.hub.resolve(p, &start)?;
                    self.group.position_or_init(p, || resolved)
                }
            };
            positions.insert(p, position);
        }
        st.positions = positions;
        st.partitions = assignment.partitions;
        st.generation = assignment.generation;
        Ok(())
    }

    /// Moves up to `max` ready events into `out`: read-ahead first, then the owned partitions
    /// in turn (at least [`FETCH_MAX`] events per partition read, the rest kept as read-ahead).
    fn try_next_batch(&self, max: usize, out: &mut Vec<ReceivedEvent>) -> Result<()> {
        let mut st = lock(&self.state);
        self.sync(&mut st)?;
        let mut tried = 0;
        while out.len() < max {
            if !st.buffer.is_empty() {
                let n = st.buffer.len().min(max - out.len());
                out.extend(st.buffer.drain(..n));
                continue;
            }
            let n = st.partitions.len();
            if tried >= n {
                break;
            }
            let idx = st.next_partition % n;
            let p = st.partitions[idx];
            let want = FETCH_MAX.max(max - out.len());
            let MemberState {
                positions, buffer, ..
            } = &mut *st;
            let pos = positions.entry(p).or_insert(0);
            if self.hub.read(p, pos, want, buffer)? > 0 {
                tried = 0;
            } else {
                tried += 1;
            }
            // Next time start after this partition, for fairness.
            st.next_partition = idx + 1;
        }
        Ok(())
    }

    /// Waits for up to `max` events until `deadline` (forever without one).
    async fn next_batch(
        &self,
        max: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<ReceivedEvent>> {
        let mut batch = Vec::new();
        if max == 0 {
            return Ok(batch);
        }
        loop {
            self.ensure_open()?;
            let data = self.hub.data.notified();
            let changed = self.group.changed.notified();
            let closed = self.close_notify.notified();
            tokio::pin!(data, changed, closed);
            data.as_mut().enable();
            changed.as_mut().enable();
            closed.as_mut().enable();
            self.ensure_open()?;
            self.try_next_batch(max, &mut batch)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            tokio::select! {
                _ = data => {}
                _ = changed => {}
                _ = closed => {}
                _ = until(deadline) => return Ok(batch),
            }
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    fn hub(&self) -> &str {
        &self.hub.name
    }

    fn group(&self) -> &str {
        &self.group_name
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        let event = self.next_batch(1, None).await?.pop();
        let event = event.ok_or_else(|| Error::closed("consumer"))?;
        let _span = telemetry::receive_span(
            "memory",
            &self.hub.name,
            Some(&self.group_name),
            event.partition,
            event.offset,
        )
        .entered();
        Ok(event)
    }

    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        self.next_batch(max, Some(tokio::time::Instant::now() + wait))
            .await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        self.ensure_open()?;
        let _span = telemetry::commit_span(
            "memory",
            &self.hub.name,
            &self.group_name,
            checkpoint.partition,
            checkpoint.offset,
        )
        .entered();
        group::check_checkpoint(&self.hub.name, checkpoint)?;
        let end = self.hub.end_offset(checkpoint.partition)?;
        if checkpoint.offset >= end {
            return Err(Error::invalid_input(format!(
                "checkpoint offset {} is not an event of partition {} (next offset is {end})",
                checkpoint.offset, checkpoint.partition
            )));
        }
        if !self
            .group
            .commit(self.member, checkpoint.partition, checkpoint.offset + 1)
        {
            return Ok(group::not_owned(
                "memory",
                &self.hub.name,
                &self.group_name,
                checkpoint,
            ));
        }
        self.hub.space.notify_waiters();
        Ok(CommitOutcome::Committed)
    }

    async fn assignment(&self) -> Result<Vec<PartitionId>> {
        self.ensure_open()?;
        let mut st = lock(&self.state);
        self.sync(&mut st)?;
        Ok(st.partitions.clone())
    }

    async fn close(&self) -> Result<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.group.leave(self.member);
            self.close_notify.notify_waiters();
            self.hub.space.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        // A dropped member must not keep its partitions: hand them to the rest of the group.
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.group.leave(self.member);
        }
    }
}

#[derive(Debug)]
pub(crate) struct MemoryReader {
    hub: Arc<HubState>,
    partition: PartitionId,
    state: Mutex<(i64, VecDeque<ReceivedEvent>)>,
    closed: AtomicBool,
    close_notify: Notify,
}

impl MemoryReader {
    pub fn new(hub: Arc<HubState>, partition: PartitionId, start: &StartPosition) -> Result<Self> {
        let position = hub.resolve(partition, start)?;
        Ok(Self {
            hub,
            partition,
            state: Mutex::new((position, VecDeque::new())),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
        })
    }
}

impl MemoryReader {
    /// Waits for up to `max` events until `deadline` (forever without one).
    async fn next_batch(
        &self,
        max: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<ReceivedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed("partition reader"));
            }
            let data = self.hub.data.notified();
            let closed = self.close_notify.notified();
            tokio::pin!(data, closed);
            data.as_mut().enable();
            closed.as_mut().enable();
            {
                let mut st = lock(&self.state);
                let (position, buffer) = &mut *st;
                if buffer.is_empty() {
                    self.hub
                        .read(self.partition, position, FETCH_MAX.max(max), buffer)?;
                }
                if !buffer.is_empty() {
                    return Ok(buffer.drain(..buffer.len().min(max)).collect());
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed("partition reader"));
            }
            tokio::select! {
                _ = data => {}
                _ = closed => {}
                _ = until(deadline) => return Ok(Vec::new()),
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl PartitionReader for MemoryReader {
    fn hub(&self) -> &str {
        &self.hub.name
    }

    fn partition(&self) -> PartitionId {
        self.partition
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        let event = self.next_batch(1, None).await?.pop();
        event.ok_or_else(|| Error::closed("partition reader"))
    }

    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        self.next_batch(max, Some(tokio::time::Instant::now() + wait))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.close_notify.notify_waiters();
        Ok(())
    }
}
