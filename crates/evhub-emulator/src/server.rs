//! Listening sockets: accept TCP (optionally TLS) connections until shutdown.

use crate::{
    broker::Broker,
    connection::{serve, Acceptor},
};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// Time a client gets for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run_listener(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    acceptor: Arc<Acceptor>,
    broker: Arc<Broker>,
    tasks: TaskTracker,
) {
    let shutdown = broker.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One permit per open connection; beyond the limit the socket is
        // closed at once (before any protocol work).
        let Ok(permit) = broker.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = broker.limits.max_connections, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, broker, tls) = (acceptor.clone(), broker.clone(), tls.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(stream, peer, acceptor, broker).await,
                Some(tls) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, peer, acceptor, broker).await,
                        Ok(Err(error)) => tracing::info!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}
