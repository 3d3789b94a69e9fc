//! The librdkafka client context: logs into `tracing`, remembers the last client error (so a
//! timeout can be explained as an auth or connection problem), hands out OAUTHBEARER tokens,
//! routes delivery reports to their batch and runs the consumer-group rebalance callbacks.

use std::sync::{Arc, Mutex};

use evhub_core::{ErrorKind, PartitionId};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::ack::AckSlot;
use crate::error::{code_of, kind_of_code, redact};
use crate::group::GroupState;
use crate::oauth::TokenSource;
use crate::util::lock;

/// The last client-level error (connection, authentication) librdkafka reported.
#[derive(Debug, Clone, Default)]
pub struct LastError(Arc<Mutex<Option<(ErrorKind, String)>>>);

impl LastError {
    /// Kind and (redacted) reason of the last error.
    pub fn get(&self) -> Option<(ErrorKind, String)> {
        lock(&self.0).clone()
    }
}

/// Context of every librdkafka client evhub creates.
pub struct EvhubContext {
    backend_id: &'static str,
    token_source: Option<Arc<TokenSource>>,
    last_error: LastError,
    group: Option<Arc<GroupState>>,
}

impl std::fmt::Debug for EvhubContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvhubContext")
            .field("backend_id", &self.backend_id)
            .field("oauth", &self.token_source.is_some())
            .finish_non_exhaustive()
    }
}

impl EvhubContext {
    /// A context for a producer, reader or admin client.
    pub fn new(backend_id: &'static str, token_source: Option<Arc<TokenSource>>) -> Self {
        Self {
            backend_id,
            token_source,
            last_error: LastError::default(),
            group: None,
        }
    }

    /// A context for a member of a consumer group.
    pub fn for_group(
        backend_id: &'static str,
        token_source: Option<Arc<TokenSource>>,
        group: Arc<GroupState>,
    ) -> Self {
        Self {
            group: Some(group),
            ..Self::new(backend_id, token_source)
        }
    }

    /// Handle on the last client-level error, readable after the context moved into a client.
    pub fn last_error_handle(&self) -> LastError {
        self.last_error.clone()
    }
}

impl ClientContext for EvhubContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let msg = redact(log_message);
        let backend = self.backend_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(backend, facility = fac, "{msg}"),
            RDKafkaLogLevel::Warning => tracing::warn!(backend, facility = fac, "{msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(backend, facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(backend, facility = fac, "{msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = code_of(&error).map_or(ErrorKind::Other, kind_of_code);
        let reason = redact(reason);
        tracing::warn!(backend = self.backend_id, kind = %kind, "librdkafka: {reason}");
        let mut last = lock(&self.last_error.0);
        // An authentication failure explains later timeouts better than the transport
        // errors that follow it: keep it.
        if last.as_ref().is_some_and(|(k, _)| *k == ErrorKind::Auth) && kind != ErrorKind::Auth {
            return;
        }
        *last = Some((kind, reason));
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        match &self.token_source {
            Some(source) => source.fetch_blocking().inspect_err(|e| {
                let msg = redact(&e.to_string());
                tracing::warn!(
                    backend = self.backend_id,
                    "OAUTHBEARER token refresh failed: {msg}"
                );
                *lock(&self.last_error.0) = Some((ErrorKind::Auth, msg));
            }),
            None => {
                Err("OAUTHBEARER needs an Azure credential (eventhubs-kafka `credential`)".into())
            }
        }
    }
}

/// Delivery reports end in the message's batch ([`BatchAck`](crate::ack::BatchAck)).
impl ProducerContext for EvhubContext {
    type DeliveryOpaque = Box<AckSlot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Self::DeliveryOpaque) {
        slot.delivered(match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((e, _)) => Err(e.clone()),
        });
    }
}

impl ConsumerContext for EvhubContext {
    /// rdkafka's rebalance, with explicit start offsets for newly assigned partitions (see
    /// [`start_positions`]).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assign {
            if let Some(group) = &self.group {
                start_positions(consumer, group, tpl);
            }
        }
        let tpl: &TopicPartitionList = tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match (assign, cooperative) {
            (true, true) => consumer.incremental_assign(tpl),
            (true, false) => consumer.assign(tpl),
            (false, true) => consumer.incremental_unassign(tpl),
            (false, false) => consumer.unassign(),
        };
        if let Err(e) = applied {
            tracing::warn!(
                backend = self.backend_id,
                "applying a rebalance failed: {e}"
            );
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(group) = &self.group else {
            return;
        };
        let hub = &*group.hub;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = partitions_of(tpl, hub);
                // Stop handing out queued events of these partitions first, then commit what
                // the application already committed but the broker has not confirmed.
                group.revoked(&revoked);
                let pending = group.take_pending(Some(&revoked));
                if !pending.is_empty() {
                    let mut list = TopicPartitionList::new();
                    for (p, next) in &pending {
                        // Partitions fit in i32: they came from librdkafka.
                        let _ = list.add_partition_offset(hub, *p as i32, Offset::Offset(*next));
                    }
                    match consumer.commit(&list, CommitMode::Sync) {
                        Ok(()) => {
                            tracing::debug!(hub = %hub, ?pending, "committed before revocation")
                        }
                        Err(e) => {
                            tracing::warn!(hub = %hub, "commit before revocation failed: {e}")
                        }
                    }
                }
                tracing::info!(backend = self.backend_id, hub = %hub, ?revoked, "partitions revoked");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(hub = %hub, "rebalance error: {e}"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(group) = &self.group else {
            return;
        };
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions_of(tpl, &group.hub);
            group.assigned(&assigned);
            tracing::info!(
                backend = self.backend_id,
                hub = %group.hub,
                ?assigned,
                "partitions assigned"
            );
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, hub: &str) -> Vec<PartitionId> {
    tpl.elements_for_topic(hub)
        .iter()
        .filter_map(|e| PartitionId::try_from(e.partition()).ok())
        .collect()
}

/// Where each newly assigned partition starts: after its checkpoint when it has one inside the
/// retained range; at `initial_position` when it has none; at the earliest retained event,
/// with a warning, when its checkpoint is out of range (expired by retention, or beyond the
/// end) — never silently at the latest, which would skip unprocessed events.
///
/// When the checkpoints cannot be read, the offsets stay unset and librdkafka resumes from the
/// checkpoint itself (`auto.offset.reset=earliest` where there is none or it is out of range).
fn start_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &GroupState,
    tpl: &mut TopicPartitionList,
) {
    let hub = &*group.hub;
    let timeout = group.request_timeout;
    let committed = match consumer.committed_offsets(tpl.clone(), timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hub = %hub, "reading the group's checkpoints failed ({e}); resuming from them with librdkafka's defaults");
            return;
        }
    };
    let initial = match group.initial {
        evhub_core::InitialPosition::Earliest => Offset::Beginning,
        evhub_core::InitialPosition::Latest => Offset::End,
    };
    for partition in partitions_of(tpl, hub) {
        let p = partition as i32;
        let checkpoint = committed
            .find_partition(hub, p)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        let start = match checkpoint {
            Offset::Offset(next) => match consumer.fetch_watermarks(hub, p, timeout) {
                Ok((low, high)) if next < low || next > high => {
                    tracing::warn!(
                        hub = %hub,
                        partition,
                        checkpoint = next,
                        low,
                        high,
                        "checkpoint is out of the retained range: resuming at the earliest retained event"
                    );
                    Offset::Beginning
                }
                _ => Offset::Offset(next),
            },
            _ => initial,
        };
        if let Err(e) = tpl.set_partition_offset(hub, p, start) {
            tracing::warn!(hub = %hub, partition, "setting the start offset failed: {e}");
        }
    }
}
