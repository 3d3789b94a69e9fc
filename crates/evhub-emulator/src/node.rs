//! Request/response nodes (`$cbs`, `$management`): the request link, the
//! reply links, and how a response finds the reply link it belongs to.

use crate::{
    address::entity_path,
    broker::{Broker, ConnectionAuth},
    cbs, management,
    storage::EventMessage,
};
use fe2o3_amqp::{link::delivery::Sendable, Receiver, Sender};
use fe2o3_amqp_types::{
    messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties},
    primitives::{OrderedMap, SimpleValue, Value},
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// How long a response waits for its reply link to attach.
const REPLY_LINK_WAIT: Duration = Duration::from_secs(5);

/// The request/response nodes the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Cbs,
    Management,
}

impl NodeKind {
    /// `$cbs` / `$management`, bare or as the last path segment of an address.
    pub(crate) fn from_address(address: &str) -> Option<Self> {
        let last = entity_path(address).rsplit('/').next().unwrap_or_default();
        if last.eq_ignore_ascii_case("$cbs") {
            Some(Self::Cbs)
        } else if last.eq_ignore_ascii_case("$management") {
            Some(Self::Management)
        } else {
            None
        }
    }
}

/// A status reply of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeResponse {
    pub status: i32,
    pub description: String,
    pub body: Value,
}

impl NodeResponse {
    pub(crate) fn ok(status: i32, body: Value) -> Self {
        Self {
            status,
            description: "OK".into(),
            body,
        }
    }

    pub(crate) fn error(status: i32, description: impl Into<String>) -> Self {
        Self {
            status,
            description: description.into(),
            body: Value::Null,
        }
    }

    fn into_message(self, request: &EventMessage) -> EventMessage {
        let correlation_id = request
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone());
        let mut application = OrderedMap::new();
        application.insert("status-code".to_string(), SimpleValue::Int(self.status));
        application.insert(
            "status-description".to_string(),
            SimpleValue::String(self.description),
        );
        Message::builder()
            .properties(Properties {
                correlation_id,
                ..Default::default()
            })
            .application_properties(ApplicationProperties(application))
            .body(Body::Value(AmqpValue(self.body)))
            .build()
    }
}

#[derive(Debug)]
struct Route {
    id: u64,
    node: NodeKind,
    address: Option<String>,
    tx: mpsc::Sender<EventMessage>,
}

/// Reply links of one session, so a response goes back where the request's
/// `reply-to` points (or to the session's only reply link for that node).
#[derive(Debug, Default)]
pub(crate) struct ReplyRoutes {
    routes: Mutex<Vec<Route>>,
    changed: Notify,
    next_id: AtomicU64,
}

impl ReplyRoutes {
    fn add(&self, node: NodeKind, address: Option<String>, tx: mpsc::Sender<EventMessage>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Route {
                id,
                node,
                address,
                tx,
            });
        self.changed.notify_waiters();
        id
    }

    fn remove(&self, id: u64) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.id != id);
    }

    fn lookup(&self, node: NodeKind, reply_to: Option<&str>) -> Option<mpsc::Sender<EventMessage>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let exact = reply_to.and_then(|to| {
            routes
                .iter()
                .rev()
                .find(|r| r.node == node && r.address.as_deref() == Some(to))
        });
        exact
            .or_else(|| routes.iter().rev().find(|r| r.node == node))
            .map(|r| r.tx.clone())
    }

    async fn find(
        &self,
        node: NodeKind,
        reply_to: Option<&str>,
    ) -> Option<mpsc::Sender<EventMessage>> {
        let deadline = tokio::time::Instant::now() + REPLY_LINK_WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(tx) = self.lookup(node, reply_to) {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// Shared by the links of one session.
#[derive(Debug)]
pub(crate) struct SessionContext {
    pub broker: Arc<Broker>,
    pub auth: Arc<ConnectionAuth>,
    pub routes: ReplyRoutes,
}

/// Serves requests arriving on a link that targets `$cbs` or `$management`.
pub(crate) async fn run_request_link(
    mut receiver: Receiver,
    node: NodeKind,
    ctx: Arc<SessionContext>,
) {
    let shutdown: CancellationToken = ctx.broker.shutdown.clone();
    loop {
        let delivery = tokio::select! {
            delivery = receiver.recv::<Body<Value>>() => delivery,
            _ = shutdown.cancelled() => break,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::debug!(?node, %error, "request link ended");
                break;
            }
        };
        // Same reason as for event senders: see `sender::DISPOSITION_DELAY`.
        tokio::time::sleep(crate::sender::DISPOSITION_DELAY).await;
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
    let _ = tokio::time::timeout(Duration::from_secs(2), receiver.close()).await;
}

/// Sends responses on a link whose source is `$cbs` or `$management`.
pub(crate) async fn run_reply_link(mut sender: Sender, node: NodeKind, ctx: Arc<SessionContext>) {
    let (tx, mut rx) = mpsc::channel::<EventMessage>(64);
    let address = sender.target().as_ref().and_then(|t| t.address.clone());
    let id = ctx.routes.add(node, address, tx);
    let shutdown = ctx.broker.shutdown.clone();
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { break };
                let sendable = Sendable::builder().message(message).settled(true).build();
                // Outcomes of responses do not matter; don't wait for them.
                if let Err(error) = sender.send_batchable(sendable).await {
                    tracing::debug!(?node, %error, "reply link failed");
                    break;
                }
            }
            error = sender.on_detach() => {
                tracing::debug!(?node, %error, "reply link detached by client");
                break;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    ctx.routes.remove(id);
    let _ = tokio::time::timeout(Duration::from_secs(2), sender.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses() {
        assert_eq!(NodeKind::from_address("$cbs"), Some(NodeKind::Cbs));
        assert_eq!(
            NodeKind::from_address("$management"),
            Some(NodeKind::Management)
        );
        assert_eq!(
            NodeKind::from_address("amqps://ns/hub/$management"),
            Some(NodeKind::Management)
        );
        assert_eq!(NodeKind::from_address("hub"), None);
    }

    #[tokio::test]
    async fn routes_prefer_reply_to_and_wait_for_attach() {
        let routes = Arc::new(ReplyRoutes::default());
        let (tx_a, mut rx_a) = mpsc::channel(1);
        let (tx_b, mut rx_b) = mpsc::channel(1);
        routes.add(NodeKind::Cbs, Some("a".into()), tx_a);
        routes.add(NodeKind::Cbs, Some("b".into()), tx_b);
        let message = || {
            Message::builder()
                .body(Body::Value(AmqpValue(Value::Null)))
                .build()
        };
        routes
            .find(NodeKind::Cbs, Some("a"))
            .await
            .unwrap()
            .send(message())
            .await
            .unwrap();
        assert!(rx_a.try_recv().is_ok() && rx_b.try_recv().is_err());
        assert!(routes.lookup(NodeKind::Management, None).is_none());
        let later = routes.clone();
        let waiter =
            tokio::spawn(async move { later.find(NodeKind::Management, None).await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (tx_m, _rx_m) = mpsc::channel(1);
        routes.add(NodeKind::Management, None, tx_m);
        assert!(waiter.await.unwrap());
    }
}
