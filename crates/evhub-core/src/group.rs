//! Rules every consumer-group backend applies the same way: which checkpoints a member may
//! commit, what a commit after a rebalance means, and which hub names are valid.
//!
//! A commit for a partition that moved to another member is an expected outcome in every
//! consumer group (the commit raced a rebalance). Backends report it with [`not_owned`], which
//! logs it and counts it, and return [`CommitOutcome::NotOwned`] instead of failing.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::consumer::CommitOutcome;
use crate::error::{Error, Result};
use crate::event::Checkpoint;

static COMMITS_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Commits skipped in this process because their partition had moved to another member
/// (all consumers, all backends). A rising count means rebalances; each is also logged.
pub fn commits_skipped() -> u64 {
    COMMITS_SKIPPED.load(Ordering::Relaxed)
}

/// Records a commit skipped because `partition` is no longer owned by this member: one
/// `tracing` warning with the hub, group and partition, and one count in [`commits_skipped`].
pub fn not_owned(
    system: &'static str,
    hub: &str,
    group: &str,
    checkpoint: &Checkpoint,
) -> CommitOutcome {
    COMMITS_SKIPPED.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        messaging.system = system,
        messaging.destination.name = hub,
        messaging.consumer.group.name = group,
        messaging.destination.partition.id = checkpoint.partition,
        offset = checkpoint.offset,
        "commit skipped: partition {} of hub `{hub}` moved to another member of group `{group}`; \
         its new owner resumes from the group's last stored checkpoint",
        checkpoint.partition
    );
    CommitOutcome::NotOwned
}

/// Checks that `checkpoint` belongs to the hub a consumer reads and names a real position.
pub fn check_checkpoint(consumer_hub: &str, checkpoint: &Checkpoint) -> Result<()> {
    if checkpoint.hub != consumer_hub {
        return Err(Error::invalid_input(format!(
            "checkpoint of hub `{}` committed on a consumer of hub `{consumer_hub}`",
            checkpoint.hub
        )));
    }
    if checkpoint.offset < 0 {
        return Err(Error::invalid_input(format!(
            "checkpoint offset {} of partition {} is negative",
            checkpoint.offset, checkpoint.partition
        )));
    }
    Ok(())
}

/// Longest hub name accepted (Kafka's topic limit; Event Hubs allows 256).
pub const MAX_HUB_NAME_LEN: usize = 249;

/// The one hub-name rule of every backend: 1–249 characters of `A-Z a-z 0-9 . _ -`, not `.` or
/// `..` — names valid as Kafka topics and as Event Hubs alike (Event Hubs additionally wants a
/// letter or digit first and last, which its service enforces).
pub fn validate_hub_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HUB_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(64).collect();
        Err(Error::invalid_input(format!(
            "invalid hub name `{shown}`: use 1-{MAX_HUB_NAME_LEN} characters of A-Z, a-z, 0-9, \
             '.', '_', '-' (not '.' or '..')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        for good in ["a", "orders.v1", "x_y-z", &"a".repeat(249)] {
            assert!(validate_hub_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "ä", "a/b", &"a".repeat(250)] {
            let err = validate_hub_name(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn not_owned_is_counted() {
        let before = commits_skipped();
        let cp = Checkpoint {
            hub: "h".into(),
            partition: 1,
            offset: 3,
            service_offset: None,
        };
        assert_eq!(not_owned("memory", "h", "g", &cp), CommitOutcome::NotOwned);
        assert!(commits_skipped() > before);
    }

    #[test]
    fn checkpoint_of_other_hub_is_invalid() {
        let cp = Checkpoint {
            hub: "other".into(),
            partition: 0,
            offset: 0,
            service_offset: None,
        };
        assert_eq!(
            check_checkpoint("h", &cp).unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        assert!(check_checkpoint("other", &cp).is_ok());
    }
}
