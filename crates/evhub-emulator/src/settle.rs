//! When the emulator answers deliveries.

use std::time::Duration;

/// How long an outcome waits before it is sent. `fe2o3-amqp` clients (the
/// Rust SDK) can register a delivery as unsettled only after the outcome for
/// it arrived when the server answers within microseconds (seen on loopback);
/// that outcome is dropped and the send never completes. Holding outcomes back
/// briefly avoids it. Settling runs in its own task, so pipelined senders keep
/// their throughput.
pub(crate) const DISPOSITION_DELAY: Duration = Duration::from_millis(3);
