//! Request/response nodes (`$cbs`, `$management`): the request link that
//! serves requests and the reply links that carry the responses back.

use crate::{
    address::NodeKind,
    cbs,
    detach::{end_receiver, end_sender, ClientDetach},
    management,
    response::ReplyMessage,
    session::SessionContext,
    settle::DISPOSITION_DELAY,
};
use fe2o3_amqp::{
    link::{delivery::Sendable, RecvError},
    Receiver, Sender,
};
use fe2o3_amqp_types::definitions::{AmqpError, Error};
use fe2o3_amqp_types::messaging::Body;
use serde_amqp::lazy::LazyValue;
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Serves requests arriving on a link that targets `$cbs` or `$management`.
pub(crate) async fn run_request_link(
    mut receiver: Receiver,
    node: NodeKind,
    ctx: Arc<SessionContext>,
) {
    let shutdown: CancellationToken = ctx.broker.shutdown.clone();
    let mut how = ClientDetach::Closed;
    loop {
        let delivery = tokio::select! {
            delivery = receiver.recv::<Body<LazyValue>>() => delivery,
            _ = shutdown.cancelled() => break,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(RecvError::LinkStateError(error)) => {
                tracing::debug!(?node, %error, "request link ended");
                how = ClientDetach::from_link_state(&error);
                break;
            }
            Err(error) => {
                // Undecodable request (e.g. nested too deep): end this link
                // with an AMQP error; the connection and the process go on.
                tracing::info!(?node, %error, "closing request link after a decode error");
                let error = Error::new(AmqpError::DecodeError, format!("{error}"), None);
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), receiver.close_with_error(error))
                        .await;
                return;
            }
        };
        tokio::time::sleep(DISPOSITION_DELAY).await;
        if let Err(error) = receiver.accept(&delivery).await {
            tracing::debug!(?node, %error, "could not settle request");
        }
        let request = delivery.into_message();
        let response = match node {
            NodeKind::Cbs => cbs::put_token(&request, &ctx.broker, &ctx.auth),
            NodeKind::Management => management::handle(&request, &ctx.broker, &ctx.auth),
        };
        tracing::debug!(?node, status = response.status, description = %response.description, "request served");
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        let message = response.into_message(&request);
        match ctx.routes.find(node, reply_to.as_deref()).await {
            Some(tx) => {
                if tx.send(message).await.is_err() {
                    tracing::debug!(?node, "reply link closed before the response was sent");
                }
            }
            None => tracing::warn!(?node, ?reply_to, "no reply link attached; response dropped"),
        }
    }
    end_receiver(receiver, how).await;
}

/// Sends responses on a link whose source is `$cbs` or `$management`.
pub(crate) async fn run_reply_link(mut sender: Sender, node: NodeKind, ctx: Arc<SessionContext>) {
    let (tx, mut rx) = mpsc::channel::<ReplyMessage>(64);
    let address = sender.target().as_ref().and_then(|t| t.address.clone());
    let id = ctx.routes.add(node, address, tx);
    let shutdown = ctx.broker.shutdown.clone();
    let mut how = ClientDetach::Closed;
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { break };
                let sendable = Sendable::builder().message(message).settled(true).build();
                // Outcomes of responses do not matter; don't wait for them.
                if let Err(error) = sender.send_batchable(sendable).await {
                    tracing::debug!(?node, %error, "reply link failed");
                    how = ClientDetach::from_send(&error);
                    break;
                }
            }
            error = sender.on_detach() => {
                tracing::debug!(?node, %error, "reply link detached by client");
                how = ClientDetach::from_detach(&error);
                break;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    ctx.routes.remove(id);
    end_sender(sender, how).await;
}
