//! Events the AMQP stack cannot decode (a "poison" event, e.g. a body nested thousands of
//! levels deep, which the workspace's patched decoder refuses instead of overflowing the
//! stack). The decode failure breaks the connection, and a receiver reopened at the same
//! position meets the same event again, for ever. Readers and group members therefore skip
//! it: they report one error naming the event and go on after it.

use evhub_core::{Error, ErrorKind, PartitionId};

/// What the AMQP transport (fe2o3-amqp) says when a frame's message does not decode.
const DECODE_FAILURE: &str = "Decoding Message failed";

/// Whether `error` (or its cause) is a message that could not be decoded.
pub(crate) fn is_undecodable(error: &Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(e) = current {
        if e.to_string().contains(DECODE_FAILURE) {
            return true;
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        current = e.source();
    }
    false
}

/// The one error reported for a skipped event.
pub(crate) fn skipped(hub: &str, partition: PartitionId, sequence: i64, cause: &Error) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "event {sequence} of hub `{hub}` partition {partition} cannot be decoded and was \
             skipped: {}",
            cause.message()
        ),
    )
}
