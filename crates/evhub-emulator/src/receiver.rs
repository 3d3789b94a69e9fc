//! Links on which clients receive events: start position, credit-bound
//! delivery of one event per transfer, and takeover by higher epochs.

use crate::{
    broker::ConnectionAuth,
    detach::{end_sender, ClientDetach},
    readers::ReaderGuard,
    settle::DISPOSITION_DELAY,
    storage::PartitionLog,
};
use fe2o3_amqp::Sender;
use fe2o3_amqp_types::definitions::{AmqpError, Error, LinkError};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Events fetched from the log per round.
const READ_CHUNK: usize = 256;

pub(crate) struct DeliveryLink {
    pub log: Arc<PartitionLog>,
    pub next_sequence: i64,
    pub guard: ReaderGuard,
    pub shutdown: CancellationToken,
    /// The connection's tokens, re-checked while the link is open (`None`
    /// with `no_auth`), and the entity they must cover.
    pub auth: Option<Arc<ConnectionAuth>>,
    pub entity_path: String,
}

/// How often an open receiver re-checks that its token has not expired.
const AUTH_RECHECK: Duration = Duration::from_secs(1);

enum Stop {
    Unauthorized,
    Stolen,
    Detached(ClientDetach),
    Shutdown,
}

pub(crate) async fn run_delivery_link(mut sender: Sender, link: DeliveryLink) {
    let stop = deliver(&mut sender, &link).await;
    match stop {
        Stop::Unauthorized => {
            let error = Error::new(
                AmqpError::UnauthorizedAccess,
                format!(
                    "The token for '{}' expired; put a new token on $cbs.",
                    link.entity_path
                ),
                None,
            );
            tracing::info!(entity = %link.entity_path, "receiver link closed: token expired");
            let _ =
                tokio::time::timeout(Duration::from_secs(5), sender.close_with_error(error)).await;
        }
        Stop::Stolen => {
            let error = Error::new(LinkError::Stolen, link.guard.stolen_reason(), None);
            tracing::info!(reason = %link.guard.stolen_reason(), "receiver link stolen");
            let _ =
                tokio::time::timeout(Duration::from_secs(5), sender.close_with_error(error)).await;
        }
        Stop::Detached(how) => end_sender(sender, how).await,
        Stop::Shutdown => end_sender(sender, ClientDetach::Closed).await,
    }
}

async fn deliver(sender: &mut Sender, link: &DeliveryLink) -> Stop {
    let mut tail = link.log.subscribe();
    let mut next = link.next_sequence;
    // Let the client finish setting up its side of the link (see
    // `DISPOSITION_DELAY` for the same kind of race).
    tokio::time::sleep(DISPOSITION_DELAY).await;
    let mut recheck = tokio::time::interval(AUTH_RECHECK);
    let authorized = || {
        link.auth
            .as_ref()
            .is_none_or(|auth| auth.allows(&link.entity_path))
    };
    loop {
        if !authorized() {
            return Stop::Unauthorized;
        }
        let events = link.log.read_from(next, READ_CHUNK);
        if events.is_empty() {
            tokio::select! {
                _ = recheck.tick() => {}
                changed = tail.changed() => {
                    if changed.is_err() {
                        return Stop::Shutdown;
                    }
                }
                _ = link.guard.stolen.cancelled() => return Stop::Stolen,
                _ = link.shutdown.cancelled() => return Stop::Shutdown,
                error = sender.on_detach() => {
                    tracing::debug!(%error, "receiver link detached by client");
                    return Stop::Detached(ClientDetach::from_detach(&error));
                }
            }
            continue;
        }
        tracing::trace!(next, count = events.len(), "delivering");
        for event in events {
            tokio::select! {
                // Waits for link credit; the client's flow frames pace delivery.
                sent = sender.send_batchable_ref(&event.sendable) => match sent {
                    // The outcome future is dropped: the event stays in the log
                    // whatever the client answers.
                    Ok(_outcome) => {
                        tracing::trace!(sequence = event.sequence, "event sent");
                        next = event.sequence + 1;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "receiver link ended while sending");
                        return Stop::Detached(ClientDetach::from_send(&error));
                    }
                },
                _ = link.guard.stolen.cancelled() => return Stop::Stolen,
                _ = link.shutdown.cancelled() => return Stop::Shutdown,
            }
        }
    }
}
