//! Replaces a member's connection when it is beyond repair.
//!
//! After a dropped connection the SDK recovers the connection but can keep a dead session for
//! a partition: every new receiver on it fails at once ("Illegal session state"), the
//! processor hands the partition out again every interval, and the member reads nothing from
//! it for ever. The pumps count such failures ([`Shared::failures`]); when they keep failing
//! with nothing delivered in between, the supervisor releases the member's partitions and
//! starts a processor on a fresh connection (a new owner id, which claims them back at once).
//! The same happens when a receiver hangs without failing ([`super::stall`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{info, warn};

use super::processor::{Launcher, Running};
use super::shutdown::STEP_TIMEOUT;
use super::stall::StallCheck;
use super::state::Item;

/// Consecutive failed partition reads (nothing delivered in between) that condemn the
/// connection.
pub(crate) const FAILURES_BEFORE_RECONNECT: u32 = 3;

/// Shortest time a receiver may wait, while events are enqueued, before it counts as hung.
const STALL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn run_supervisor(launcher: Arc<Launcher>, running: Arc<Mutex<Option<Running>>>) {
    let shared = launcher.shared.clone();
    let interval = shared.options.load_balancing_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stall = StallCheck::new((interval * 3).max(STALL_WINDOW));
    loop {
        tick.tick().await;
        let failing = shared.failures.load(Ordering::Relaxed) >= FAILURES_BEFORE_RECONNECT;
        if !failing && !stall.hung(&shared, &launcher.connector).await {
            continue;
        }
        warn!(
            hub = %shared.hub,
            group = %shared.group,
            "partition receivers keep failing on this connection; reconnecting"
        );
        let mut slot = running.lock().await;
        if let Some(mut old) = slot.take() {
            old.stop().await;
            shared.end_all_acquisitions();
            let _ = tokio::time::timeout(STEP_TIMEOUT, shared.store.relinquish()).await;
            old.close(STEP_TIMEOUT).await;
        }
        shared.store.forget_owner();
        shared.failures.store(0, Ordering::Relaxed);
        match launcher.launch().await {
            Ok(new) => {
                info!(hub = %shared.hub, group = %shared.group, "member reconnected");
                *slot = Some(new);
            }
            Err(e) if !e.is_retriable() => {
                warn!(error = %e, "reconnecting failed; the member stops");
                let _ = launcher.tx.send(Item::Fatal(e)).await;
                return;
            }
            Err(e) => {
                // Tried again at the next tick; the application hears about it.
                shared
                    .failures
                    .store(FAILURES_BEFORE_RECONNECT, Ordering::Relaxed);
                let _ = launcher.tx.try_send(Item::Stalled(e));
            }
        }
    }
}
