//! A cloneable shutdown signal shared by the caller and a running pipeline.

use std::sync::Arc;

use tokio::sync::watch;

/// Asks a running [`crate::Pipeline`] to stop: it stops receiving, drains in-flight events,
/// commits what is done and leaves the consumer group. Clones share one signal.
///
/// ```
/// let token = evhub_pipeline::ShutdownToken::new();
/// let copy = token.clone();
/// assert!(!copy.is_shutdown());
/// token.shutdown();
/// assert!(copy.is_shutdown());
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownToken {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for ShutdownToken {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownToken {
    /// A token that has not been triggered.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Triggers the shutdown. Idempotent.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the shutdown was triggered (immediately if it already was).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
