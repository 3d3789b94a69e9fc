//! Runs the processor's balancing loop and decides what its failures mean for the member.
//!
//! Every failure reaches the application through `recv`, by kind:
//! - permanent (hub or container missing, credentials rejected, a corrupt checkpoint or
//!   ownership record, ...): [`Item::Fatal`], the member stops balancing and every later `recv`
//!   returns the error;
//! - retriable (store or service unreachable): retried every interval; once the failures last
//!   longer than an ownership expiry (this member's claims have lapsed, so it reads nothing)
//!   [`Item::Stalled`] is reported, once per expiry, and balancing goes on.
//!
//! [`Item::Fatal`] waits for room in the channel (the member is over, and the events already
//! buffered come first); [`Item::Stalled`] never blocks balancing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::EventProcessor;
use evhub_core::Error;
use tokio::sync::mpsc;
use tracing::warn;

use super::state::{Item, Shared};
use crate::error::from_hubs;

/// Pause before restarting a failed processor run.
const RESTART_DELAY: Duration = Duration::from_secs(1);

pub(crate) async fn run_balancer(
    processor: Arc<EventProcessor>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Item>,
) {
    let what = format!("balancing group `{}` on hub `{}`", shared.group, shared.hub);
    let mut failing_since: Option<Instant> = None;
    let mut reported_at: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let result = processor.run().await;
        // The store wrapper saw the failure with its real kind (the SDK's error wraps it).
        let store_error = shared.store.take_error();
        let error = match result {
            Ok(()) => return,
            Err(e) => match store_error {
                Some(store_error) => store_error,
                None => from_hubs(&what, e),
            },
        };
        if !error.is_retriable() {
            warn!(error = %error, "event processor failed; the member stops");
            let _ = tx.send(Item::Fatal(error)).await;
            return;
        }
        warn!(error = %error, "event processor stopped; restarting");
        // `run` balances at once and then once per interval: a run that lasted an interval
        // had at least one good pass, so the outage (if any) starts now.
        if started.elapsed() >= shared.options.load_balancing_interval {
            failing_since = None;
        }
        let since = *failing_since.get_or_insert(started);
        let expiry = shared.options.ownership_expiration;
        if since.elapsed() >= expiry && reported_at.is_none_or(|at| at.elapsed() >= expiry) {
            reported_at = Some(Instant::now());
            let stalled = Error::new(
                error.kind(),
                format!(
                    "{what}: failing for {:?}, longer than the ownership expiry; this member \
                     owns no partition until it recovers: {}",
                    since.elapsed(),
                    error.message()
                ),
            )
            .with_retriable(true)
            .with_source(error);
            // Never wait on a full channel here: balancing must go on. A full channel means the
            // application has events in hand and will see the next report.
            if tx.try_send(Item::Stalled(stalled)).is_err() {
                reported_at = None;
            }
        }
        tokio::time::sleep(RESTART_DELAY).await;
    }
}
