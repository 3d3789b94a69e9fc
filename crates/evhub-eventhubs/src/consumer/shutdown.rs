//! Leaving the group: stop balancing, stop the pumps, release the partitions, close the
//! processor — each step bounded, so `close` returns in time even when the server or the store
//! is gone (unreleased claims then expire after the ownership expiry).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::warn;

use super::processor::Running;
use super::store::TrackingStore;

/// How long each shutdown step may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `close` tears down.
pub(crate) struct Parts {
    pub running: Arc<Mutex<Option<Running>>>,
    pub supervisor: JoinHandle<()>,
    pub stop: watch::Sender<bool>,
    pub pumps_done: oneshot::Receiver<()>,
}

impl Parts {
    pub async fn shutdown(self, store: &TrackingStore) {
        self.supervisor.abort();
        let _ = self.supervisor.await;
        let running = match tokio::time::timeout(STEP_TIMEOUT, self.running.lock()).await {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let mut running = running;
        if let Some(running) = running.as_mut() {
            running.stop().await;
        }
        let _ = self.stop.send(true);
        if tokio::time::timeout(STEP_TIMEOUT, self.pumps_done)
            .await
            .is_err()
        {
            warn!("partition pumps did not stop within {STEP_TIMEOUT:?}; releasing anyway");
        }
        // Release at once so the other members take the partitions at their next pass.
        if tokio::time::timeout(STEP_TIMEOUT, store.relinquish())
            .await
            .is_err()
        {
            warn!("releasing partitions timed out; the claims expire instead");
        }
        if let Some(running) = running {
            running.close(STEP_TIMEOUT).await;
        }
    }
}
