//! Consumer lag per partition, probed off the receive loop: metadata calls can be slow (a
//! management round trip per partition on Event Hubs) and must never delay receiving.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evhub_core::{Backend, ErrorKind, PartitionId};

use crate::shutdown::ShutdownToken;
use crate::stats::Stats;

/// The coordinator's view of its partitions, copied here for the probe.
#[derive(Debug, Default, Clone)]
pub(crate) struct Owned {
    pub partitions: BTreeSet<PartitionId>,
    pub first_received: HashMap<PartitionId, i64>,
}

pub(crate) type SharedOwned = Arc<Mutex<Owned>>;

/// One probe of every owned partition; false when the backend cannot report end offsets.
pub(crate) async fn probe(
    source: &Arc<dyn Backend>,
    hub: &str,
    stats: &Stats,
    owned: &SharedOwned,
) -> bool {
    let view = owned
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    for p in view.partitions {
        match source.partition_properties(hub, p).await {
            Ok(props) => {
                // Without a commit or a first event of this run the group's position is not
                // visible through the consumer API: lag stays unknown rather than guessed.
                let first = view.first_received.get(&p).copied();
                stats.end_offset(p, props.end_offset, first);
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => return false,
            Err(e) => tracing::debug!(partition = p, "pipeline: lag unavailable: {e}"),
        }
    }
    let s = stats.snapshot();
    tracing::info!(
        received = s.received,
        handled = s.handled,
        skipped = s.skipped,
        produced = s.produced,
        retried = s.retried,
        dead_lettered = s.dead_lettered,
        committed = s.committed,
        in_flight = s.in_flight,
        lag = s.total_lag(),
        "pipeline progress"
    );
    true
}

/// Probes every `every` until `stop`.
pub(crate) async fn run_probe(
    source: Arc<dyn Backend>,
    hub: String,
    stats: Stats,
    owned: SharedOwned,
    every: Duration,
    stop: ShutdownToken,
) {
    let mut supported = true;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tick.tick() => {}
        }
        if supported {
            supported = probe(&source, &hub, &stats, &owned).await;
        }
    }
}
