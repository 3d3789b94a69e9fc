//! Answering a client's detach in kind.
//!
//! A client detaches a link either for good (`closed = true`) or only for now
//! (`closed = false`, e.g. the Rust SDK's `EventReceiver::close` and
//! `ProducerClient::close`). Answering a non-closing detach with a closing
//! one is legal but makes the client reattach the link only to close it
//! (AMQP 1.0 2.6.6): an extra link on the partition that starts delivering,
//! and a path in `fe2o3-amqp` that fails with "Remote sent an attach with a
//! name that cannot be found locally". The service answers in kind; so does
//! the emulator.

use fe2o3_amqp::link::{DetachError, LinkStateError, SendError};
use fe2o3_amqp::{Receiver, Sender};
use std::time::Duration;

/// How long the answer to a detach may take.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// How the client ended a link, as far as the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientDetach {
    /// `closed = false`: answer with a non-closing detach.
    Detached,
    /// `closed = true` (or no detach seen): answer by closing.
    Closed,
}

impl ClientDetach {
    pub(crate) fn from_link_state(error: &LinkStateError) -> Self {
        match error {
            LinkStateError::RemoteDetached | LinkStateError::RemoteDetachedWithError(_) => {
                Self::Detached
            }
            _ => Self::Closed,
        }
    }

    pub(crate) fn from_detach(error: &DetachError) -> Self {
        match error {
            DetachError::DetachedByRemote | DetachError::RemoteDetachedWithError(_) => {
                Self::Detached
            }
            _ => Self::Closed,
        }
    }

    pub(crate) fn from_send(error: &SendError) -> Self {
        match error {
            SendError::LinkStateError(error) => Self::from_link_state(error),
            _ => Self::Closed,
        }
    }
}

/// Ends an outgoing link after the client's detach (or on shutdown).
pub(crate) async fn end_sender(sender: Sender, how: ClientDetach) {
    match how {
        ClientDetach::Detached => {
            let _ = tokio::time::timeout(DETACH_TIMEOUT, sender.detach()).await;
        }
        ClientDetach::Closed => {
            let _ = tokio::time::timeout(DETACH_TIMEOUT, sender.close()).await;
        }
    }
}

/// Ends an incoming link after the client's detach (or on shutdown).
pub(crate) async fn end_receiver(receiver: Receiver, how: ClientDetach) {
    match how {
        ClientDetach::Detached => {
            let _ = tokio::time::timeout(DETACH_TIMEOUT, receiver.detach()).await;
        }
        ClientDetach::Closed => {
            let _ = tokio::time::timeout(DETACH_TIMEOUT, receiver.close()).await;
        }
    }
}
