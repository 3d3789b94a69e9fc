//! Small helpers every module of the crate uses; they depend on nothing else in the crate.

use std::sync::{Mutex, MutexGuard};

use evhub_core::{Error, ErrorKind, Result};

/// Locks a mutex, recovering the data when a panicking thread poisoned it (every critical
/// section in this crate leaves its data consistent at each step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a blocking librdkafka call off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("blocking task failed: {e}")))
}
