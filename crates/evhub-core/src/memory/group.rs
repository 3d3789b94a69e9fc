//! Consumer-group coordination: membership, partition assignment, checkpoints.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::event::PartitionId;

use super::hub::lock;

#[derive(Debug)]
struct GroupInner {
    generation: u64,
    next_member: u64,
    /// Member ids in join order.
    members: Vec<u64>,
    /// Owner of each partition.
    owners: Vec<Option<u64>>,
    /// Next offset to read per partition: the committed checkpoint + 1, or where the group
    /// started the partition (so a later owner starts at the same place, never later).
    positions: Vec<Option<i64>>,
}

/// One consumer group of one hub.
#[derive(Debug)]
pub(crate) struct GroupState {
    inner: Mutex<GroupInner>,
    /// Woken on every membership change.
    pub changed: Notify,
}

/// A member's view of the group after a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub generation: u64,
    pub partitions: Vec<PartitionId>,
}

impl GroupState {
    pub fn new(partitions: u32) -> Self {
        Self {
            inner: Mutex::new(GroupInner {
                generation: 0,
                next_member: 1,
                members: Vec::new(),
                owners: vec![None; partitions as usize],
                positions: vec![None; partitions as usize],
            }),
            changed: Notify::new(),
        }
    }

    /// Adds a member and rebalances; returns its id.
    pub fn join(&self) -> u64 {
        let id = {
            let mut g = lock(&self.inner);
            let id = g.next_member;
            g.next_member += 1;
            g.members.push(id);
            rebalance(&mut g);
            id
        };
        self.changed.notify_waiters();
        id
    }

    /// Removes a member and rebalances its partitions onto the others.
    pub fn leave(&self, member: u64) {
        {
            let mut g = lock(&self.inner);
            let before = g.members.len();
            g.members.retain(|m| *m != member);
            if g.members.len() == before {
                return;
            }
            rebalance(&mut g);
        }
        self.changed.notify_waiters();
    }

    pub fn generation(&self) -> u64 {
        lock(&self.inner).generation
    }

    pub fn assignment(&self, member: u64) -> Assignment {
        let g = lock(&self.inner);
        Assignment {
            generation: g.generation,
            partitions: owned(&g, member),
        }
    }

    /// The group's position for a partition, initialising it with `init` when the group has none.
    pub fn position_or_init(&self, partition: PartitionId, init: impl FnOnce() -> i64) -> i64 {
        let mut g = lock(&self.inner);
        match g.positions.get(partition as usize).copied().flatten() {
            Some(p) => p,
            None => {
                let p = init();
                if let Some(slot) = g.positions.get_mut(partition as usize) {
                    *slot = Some(p);
                }
                p
            }
        }
    }

    /// Stores `next` as the group's position if `member` owns `partition`.
    pub fn commit(&self, member: u64, partition: PartitionId, next: i64) -> bool {
        let mut g = lock(&self.inner);
        if g.owners.get(partition as usize).copied().flatten() != Some(member) {
            return false;
        }
        g.positions[partition as usize] = Some(next);
        true
    }

    /// Lowest offset this group may still read on `partition`.
    pub fn committed_or_floor(&self, partition: PartitionId) -> i64 {
        lock(&self.inner)
            .positions
            .get(partition as usize)
            .copied()
            .flatten()
            // A group that has not started the partition yet may start from its beginning.
            .unwrap_or(i64::MIN)
    }
}

fn owned(g: &GroupInner, member: u64) -> Vec<PartitionId> {
    g.owners
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Some(member))
        .map(|(p, _)| p as PartitionId)
        .collect()
}

/// Round-robin assignment in join order: partition `p` goes to member `p % n`.
fn rebalance(g: &mut GroupInner) {
    g.generation += 1;
    let n = g.members.len();
    for p in 0..g.owners.len() {
        g.owners[p] = (n > 0).then(|| g.members[p % n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_split_and_move_on_leave() {
        let g = GroupState::new(4);
        let a = g.join();
        assert_eq!(g.assignment(a).partitions, vec![0, 1, 2, 3]);
        let b = g.join();
        assert_eq!(g.assignment(a).partitions, vec![0, 2]);
        assert_eq!(g.assignment(b).partitions, vec![1, 3]);
        g.leave(a);
        assert_eq!(g.assignment(b).partitions, vec![0, 1, 2, 3]);
        assert_eq!(g.generation(), 3);
    }

    #[test]
    fn only_the_owner_commits() {
        let g = GroupState::new(2);
        let a = g.join();
        let b = g.join();
        assert!(g.commit(a, 0, 5));
        assert!(!g.commit(b, 0, 9));
        assert_eq!(g.committed_or_floor(0), 5);
        assert_eq!(g.committed_or_floor(1), i64::MIN);
    }
}
