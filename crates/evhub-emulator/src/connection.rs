//! One client connection: limits on incoming frames, SASL and open, and its
//! sessions (each link attach is handed to `attach`).

use crate::{
    attach::route_attach,
    broker::{Broker, ConnectionAuth},
    depth::MAX_NESTING_DEPTH,
    frame_pad::PadFrames,
    inbound::InboundLimits,
    sasl::EmulatorSasl,
    session::{LinkSlot, SessionContext},
};
use fe2o3_amqp::acceptor::{ConnectionAcceptor, ListenerSessionHandle, SessionAcceptor};
use fe2o3_amqp_types::definitions::{AmqpError, Error};
use futures::FutureExt;
use std::sync::atomic::AtomicUsize;
use std::{fmt::Debug, net::SocketAddr, sync::Arc, time::Duration};
use tokio::io::{AsyncRead, AsyncWrite};

/// Time a client gets to finish the protocol header, SASL and open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Acceptor = ConnectionAcceptor<(), EmulatorSasl>;

/// Largest frame accepted; the SDKs ask for 64 KiB.
pub(crate) const MAX_FRAME_SIZE: u32 = 64 * 1024;

pub(crate) fn build_acceptor(broker: &Broker) -> Acceptor {
    ConnectionAcceptor::builder()
        .container_id("evhub-emulator")
        .max_frame_size(MAX_FRAME_SIZE)
        // channel-max is the highest channel number, so one less than the count.
        .session_max(
            u16::try_from(broker.limits.max_sessions_per_connection.saturating_sub(1))
                .unwrap_or(u16::MAX),
        )
        .sasl_acceptor(EmulatorSasl {
            keys: Arc::new(broker.keys.clone()),
            no_auth: broker.no_auth,
        })
        .build()
}

/// Limits on a connection's incoming frames. A message may run one frame
/// past `max_message_size` while it is reassembled, so a message just over
/// the limit still arrives whole and is rejected with
/// `com.microsoft:message-size-exceeded` on its own link; anything longer
/// ends the connection.
fn inbound_limits(broker: &Broker) -> InboundLimits {
    let per_link = broker.max_message_size + u64::from(MAX_FRAME_SIZE);
    InboundLimits {
        max_frame_size: MAX_FRAME_SIZE as usize,
        max_reassembly: per_link,
        max_connection_reassembly: per_link * 4,
        max_depth: MAX_NESTING_DEPTH,
    }
}

/// Serves one accepted socket (plain or TLS) until it closes.
pub(crate) async fn serve<Io>(
    io: Io,
    peer: SocketAddr,
    acceptor: Arc<Acceptor>,
    broker: Arc<Broker>,
) where
    Io: AsyncRead + AsyncWrite + Debug + Send + Unpin + 'static,
{
    let mut connection = match tokio::time::timeout(
        OPEN_TIMEOUT,
        acceptor.accept(PadFrames::with_limits(io, inbound_limits(&broker))),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "connection refused during open");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "connection did not open in time");
            return;
        }
    };
    tracing::debug!(%peer, "connection opened");
    let auth = Arc::new(ConnectionAuth::default());
    let shutdown = broker.shutdown.clone();
    let sessions = Arc::new(AtomicUsize::new(0));
    let session_acceptor = SessionAcceptor::builder()
        // handle-max is the highest handle number, one less than the count.
        .handle_max(
            u32::try_from(broker.limits.max_links_per_session.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .build();
    // Connections must put a valid token on $cbs within the auth timeout.
    let auth_deadline = tokio::time::sleep(Duration::from_secs(broker.limits.auth_timeout_secs));
    tokio::pin!(auth_deadline);
    let mut auth_pending = !broker.no_auth;
    let mut close_error = None;
    loop {
        tokio::select! {
            incoming = connection.next_incoming_session() => {
                let Some(incoming) = incoming else { break };
                match session_acceptor.accept_incoming_session(incoming, &mut connection).await {
                    Ok(mut session) => {
                        let ctx = Arc::new(SessionContext::new(broker.clone(), auth.clone()));
                        match LinkSlot::claim(&sessions, broker.limits.max_sessions_per_connection) {
                            Some(slot) => {
                                tokio::spawn(async move {
                                    serve_session(session, ctx).await;
                                    drop(slot);
                                });
                            }
                            None => {
                                tracing::info!(%peer, "session limit reached; ending the new session");
                                let error = Error::new(
                                    AmqpError::ResourceLimitExceeded,
                                    format!(
                                        "A connection may have at most {} sessions open.",
                                        broker.limits.max_sessions_per_connection
                                    ),
                                    None,
                                );
                                tokio::spawn(async move {
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(2),
                                        session.end_with_error(error),
                                    )
                                    .await;
                                });
                            }
                        }
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "session refused");
                        break;
                    }
                }
            }
            _ = &mut auth_deadline, if auth_pending => {
                auth_pending = false;
                if !auth.any_valid() {
                    tracing::info!(%peer, "no valid token within the auth timeout; closing the connection");
                    close_error = Some(Error::new(
                        AmqpError::UnauthorizedAccess,
                        format!(
                            "No valid token was put on $cbs within {} s.",
                            broker.limits.auth_timeout_secs
                        ),
                        None,
                    ));
                    break;
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    let closed = match close_error {
        Some(error) => connection.close_with_error(error).boxed(),
        None => connection.close().boxed(),
    };
    match tokio::time::timeout(Duration::from_secs(2), closed).await {
        Ok(Err(error)) => tracing::info!(%peer, %error, "connection ended with an error"),
        _ => tracing::debug!(%peer, "connection closed"),
    }
}

async fn serve_session(mut session: ListenerSessionHandle, ctx: Arc<SessionContext>) {
    let shutdown = ctx.broker.shutdown.clone();
    loop {
        tokio::select! {
            attach = session.next_incoming_attach() => {
                let Some(attach) = attach else {
                    // The client ended the session; the engine already answered.
                    return;
                };
                if let Err(error) = route_attach(attach, &mut session, &ctx).await {
                    tracing::info!(%error, "link attach failed");
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), session.end()).await;
}
