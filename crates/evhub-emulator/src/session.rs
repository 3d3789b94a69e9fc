//! What the links of one session share: the broker, the connection's
//! authorization, and the routes from node requests to their reply links.

use crate::{
    address::NodeKind,
    broker::{Broker, ConnectionAuth},
    response::ReplyMessage,
};
use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Notify};

/// How long a response waits for its reply link to attach.
const REPLY_LINK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Route {
    id: u64,
    node: NodeKind,
    address: Option<String>,
    tx: mpsc::Sender<ReplyMessage>,
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
    pub(crate) fn add(
        &self,
        node: NodeKind,
        address: Option<String>,
        tx: mpsc::Sender<ReplyMessage>,
    ) -> u64 {
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

    pub(crate) fn remove(&self, id: u64) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.id != id);
    }

    pub(crate) fn lookup(
        &self,
        node: NodeKind,
        reply_to: Option<&str>,
    ) -> Option<mpsc::Sender<ReplyMessage>> {
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

    pub(crate) async fn find(
        &self,
        node: NodeKind,
        reply_to: Option<&str>,
    ) -> Option<mpsc::Sender<ReplyMessage>> {
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
    /// Links open on this session.
    pub links: Arc<AtomicUsize>,
}

impl SessionContext {
    pub(crate) fn new(broker: Arc<Broker>, auth: Arc<ConnectionAuth>) -> Self {
        Self {
            broker,
            auth,
            routes: ReplyRoutes::default(),
            links: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot for one more link, or `None` at `limits.max_links_per_session`.
    pub(crate) fn claim_link(&self) -> Option<LinkSlot> {
        LinkSlot::claim(&self.links, self.broker.limits.max_links_per_session)
    }
}

/// Counts one open link (or session); released on drop.
#[derive(Debug, Clone)]
pub(crate) struct LinkSlot {
    /// Shared by clones: the slot is released when the last one drops.
    _held: Arc<SlotRelease>,
}

#[derive(Debug)]
struct SlotRelease(Arc<AtomicUsize>);

impl Drop for SlotRelease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LinkSlot {
    /// Takes one of `limit` slots counted by `count`.
    pub(crate) fn claim(count: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            _held: Arc::new(SlotRelease(count.clone())),
        })
    }

    /// Slots in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self._held.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::{
        messaging::{AmqpValue, Body, Message},
        primitives::Value,
    };

    #[test]
    fn slots_are_limited_and_released() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = LinkSlot::claim(&count, 2).unwrap();
        let b = LinkSlot::claim(&count, 2).unwrap();
        assert!(LinkSlot::claim(&count, 2).is_none());
        let a2 = a.clone();
        drop(a);
        assert_eq!(a2.in_use(), 2, "a clone keeps the slot");
        drop(a2);
        assert_eq!(b.in_use(), 1);
        assert!(LinkSlot::claim(&count, 2).is_some());
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
