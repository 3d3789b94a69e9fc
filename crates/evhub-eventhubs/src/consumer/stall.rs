//! Detects a connection that hangs without failing: after some connection drops the SDK's
//! recovery waits for ever, so a partition's receiver neither delivers nor errs. An idle
//! partition looks the same from inside, so the check asks the service (a management request
//! on a connection of its own): a receiver that has waited longer than the stall window while
//! the partition holds events after the last one it delivered (or, before its first event,
//! events enqueued since it began waiting) is hung. A pump waiting for room in the channel
//! (a slow application) is never suspected.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::ConsumerClient;
use evhub_core::PartitionId;
use tracing::{debug, warn};

use super::state::Shared;
use crate::connector::Connector;
use crate::error::from_hubs;

/// What is known of one acquisition since it last made progress.
struct Watch {
    generation: u64,
    delivered: i64,
    /// When the pump was last seen delivering or not waiting.
    since: Instant,
    /// The partition's last enqueued sequence number when the window began.
    enqueued_at_start: Option<i64>,
    /// When the service was last asked about this partition (at most once per window).
    probed: Option<Instant>,
}

pub(crate) struct StallCheck {
    window: Duration,
    watches: HashMap<PartitionId, Watch>,
    probe: Option<ConsumerClient>,
}

impl StallCheck {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            watches: HashMap::new(),
            probe: None,
        }
    }

    /// Whether a partition receiver of this member hangs.
    pub async fn hung(&mut self, shared: &Shared, connector: &Connector) -> bool {
        let now = Instant::now();
        let current: Vec<(PartitionId, u64, i64, bool)> = match shared.reading.lock() {
            Ok(reading) => reading
                .iter()
                .map(|(p, a)| {
                    (
                        *p,
                        a.generation,
                        a.progress.delivered.load(Ordering::Relaxed),
                        a.progress.waiting.load(Ordering::Relaxed),
                    )
                })
                .collect(),
            Err(_) => return false,
        };
        self.watches.retain(|p, w| {
            current
                .iter()
                .any(|(q, g, _, _)| q == p && *g == w.generation)
        });
        let mut due = Vec::new();
        for (partition, generation, delivered, waiting) in current {
            let watch = self.watches.entry(partition).or_insert(Watch {
                generation,
                delivered,
                since: now,
                enqueued_at_start: None,
                probed: None,
            });
            if watch.delivered != delivered || !waiting {
                *watch = Watch {
                    generation,
                    delivered,
                    since: now,
                    enqueued_at_start: None,
                    probed: None,
                };
                continue;
            }
            let first_look = watch.delivered < 0 && watch.enqueued_at_start.is_none();
            let probe_due = watch.probed.is_none_or(|at| at.elapsed() >= self.window);
            if first_look || (watch.since.elapsed() >= self.window && probe_due) {
                watch.probed = Some(now);
                due.push(partition);
            }
        }
        for partition in due {
            let Some(enqueued) = self.last_enqueued(shared, connector, partition).await else {
                continue;
            };
            let Some(watch) = self.watches.get_mut(&partition) else {
                continue;
            };
            if watch.delivered < 0 && watch.enqueued_at_start.is_none() {
                // Where the receiver starts is unknown: only events enqueued from now count.
                watch.enqueued_at_start = Some(enqueued);
                continue;
            }
            let missing = if watch.delivered >= 0 {
                enqueued > watch.delivered
            } else {
                watch
                    .enqueued_at_start
                    .is_some_and(|start| enqueued > start)
            };
            if missing && watch.since.elapsed() >= self.window {
                warn!(
                    partition,
                    waited = ?watch.since.elapsed(),
                    delivered = watch.delivered,
                    enqueued,
                    "partition receiver hangs: events are enqueued, none arrive"
                );
                self.watches.clear();
                return true;
            }
        }
        false
    }

    async fn last_enqueued(
        &mut self,
        shared: &Shared,
        connector: &Connector,
        partition: PartitionId,
    ) -> Option<i64> {
        if self.probe.is_none() {
            match connector.consumer(&shared.hub, &shared.group).await {
                Ok(client) => self.probe = Some(client),
                Err(e) => {
                    debug!(error = %e, "stall probe: cannot connect");
                    return None;
                }
            }
        }
        let client = self.probe.as_ref()?;
        let what = format!("reading partition {partition} properties");
        let read = async {
            client
                .get_partition_properties(&partition.to_string())
                .await
                .map_err(|e| from_hubs(&what, e))
        };
        match connector.timed(&what, read).await {
            Ok(p) => Some(p.last_enqueued_sequence_number),
            Err(e) => {
                debug!(error = %e, "stall probe failed");
                if let Some(client) = self.probe.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
                }
                None
            }
        }
    }
}
