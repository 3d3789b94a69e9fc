//! Leaving the group: stop balancing, stop the pumps, release the partitions, close the
//! processor — each step bounded, so `close` returns in time even when the server or the store
//! is gone (unreleased claims then expire after the ownership expiry).

use std::sync::Arc;
use std::time::Duration;

use azure_messaging_eventhubs::EventProcessor;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::store::TrackingStore;

/// How long each shutdown step may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `close` tears down.
pub(crate) struct Parts {
    pub processor: Arc<EventProcessor>,
    pub balancer: JoinHandle<()>,
    pub dispatcher: JoinHandle<()>,
    pub stop: watch::Sender<bool>,
    pub pumps_done: oneshot::Receiver<()>,
}

impl Parts {
    pub async fn shutdown(self, store: &TrackingStore) {
        let _ = self.processor.shutdown().await;
        self.balancer.abort();
        self.dispatcher.abort();
        let _ = self.balancer.await;
        let _ = self.dispatcher.await;
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
        if let Ok(processor) = Arc::try_unwrap(self.processor) {
            match tokio::time::timeout(STEP_TIMEOUT, processor.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "closing event processor"),
                Err(_) => debug!("closing event processor timed out"),
            }
        }
    }
}
