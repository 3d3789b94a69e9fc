//! The conformance cases, one `pub async fn` per case over a [`Harness`], each with its own hub
//! and group names. Every such function must be registered in `__with_case_names!` (lib.rs);
//! a test derives the defined cases from these files and fails on a missing one.

mod basic;
mod batch;
mod group;
mod rebalance;

pub use basic::*;
pub use batch::*;
pub use group::*;
pub use rebalance::*;

/// Source text of the case files, for the check that every case is registered.
pub(crate) const SOURCES: &[&str] = &[
    include_str!("basic.rs"),
    include_str!("batch.rs"),
    include_str!("group.rs"),
    include_str!("rebalance.rs"),
];

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use evhub_core::telemetry::TraceContext;
use evhub_core::{
    Backend, CommitTracker, Consumer, ConsumerOptions, ErrorKind, Event, InitialPosition,
    ReaderOptions, ReceivedEvent, StartPosition,
};

use crate::harness::{Harness, Outcome};
use crate::support::{
    ensure, expect_quiet, join, read_n, recv_n, text, unique_name, wait_assigned, wait_settled,
    CaseResult, Failure,
};

async fn setup(
    h: &dyn Harness,
    case: &str,
    partitions: u32,
) -> Result<(Arc<dyn Backend>, String), Failure> {
    let hub = unique_name(case);
    h.create_hub(&hub, partitions).await?;
    Ok((h.connect().await?, hub))
}

async fn group(h: &dyn Harness, hub: &str, case: &str) -> Result<String, Failure> {
    let group = unique_name(&format!("{case}-g"));
    h.create_group(hub, &group).await?;
    Ok(group)
}

fn numbered(prefix: &str, n: usize) -> Vec<Event> {
    (0..n).map(|i| Event::new(format!("{prefix}{i}"))).collect()
}

fn texts(events: &[ReceivedEvent]) -> Vec<String> {
    events.iter().map(text).collect()
}

fn skip(reason: impl Into<String>) -> CaseResult {
    Ok(Outcome::Skipped(reason.into()))
}
