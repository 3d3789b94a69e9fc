//! The librdkafka client context: logs into `tracing`, remembers the last client error (so a
//! timeout can be explained as an auth or connection problem), hands out OAUTHBEARER tokens and
//! runs the consumer-group rebalance callbacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use evhub_core::{ErrorKind, PartitionId};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{code_of, kind_of_code, redact};
use crate::oauth::TokenSource;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared between a group member and its rebalance callbacks.
#[derive(Debug, Default)]
pub struct GroupShared {
    /// Owned partitions: the assignment generation each was (re)assigned in, and the highest
    /// offset handed to the application since.
    assigned: Mutex<BTreeMap<PartitionId, Owned>>,
    generation: Mutex<u64>,
    /// Checkpoints asked for but not yet confirmed by the broker: Kafka offset to commit
    /// (event offset + 1) per partition.
    pending: Mutex<HashMap<PartitionId, i64>>,
}

#[derive(Debug, Clone, Copy)]
struct Owned {
    generation: u64,
    delivered: Option<i64>,
}

impl GroupShared {
    /// Generation of `partition`'s current assignment, `None` when not owned.
    pub fn generation_of(&self, partition: PartitionId) -> Option<u64> {
        lock(&self.assigned).get(&partition).map(|o| o.generation)
    }

    /// Owned partitions, ascending.
    pub fn assignment(&self) -> Vec<PartitionId> {
        lock(&self.assigned).keys().copied().collect()
    }

    /// Records a checkpoint about to be committed.
    pub fn add_pending(&self, partition: PartitionId, next_offset: i64) {
        let mut pending = lock(&self.pending);
        let entry = pending.entry(partition).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    /// Drops a pending checkpoint once the broker confirmed it (or a newer one).
    pub fn confirm(&self, partition: PartitionId, next_offset: i64) {
        let mut pending = lock(&self.pending);
        if pending.get(&partition).is_some_and(|o| *o <= next_offset) {
            pending.remove(&partition);
        }
    }

    /// Pending checkpoints of `partitions` (all when `None`), removing them.
    pub fn take_pending(&self, partitions: Option<&[PartitionId]>) -> Vec<(PartitionId, i64)> {
        let mut pending = lock(&self.pending);
        let keys: Vec<PartitionId> = match partitions {
            Some(ps) => ps
                .iter()
                .copied()
                .filter(|p| pending.contains_key(p))
                .collect(),
            None => pending.keys().copied().collect(),
        };
        keys.into_iter()
            .filter_map(|p| pending.remove(&p).map(|o| (p, o)))
            .collect()
    }

    /// If an event fetched under `generation` may still be handed out, notes that `offset` of
    /// `partition` was handed to the application and returns true (one lock per event).
    pub fn deliver(&self, partition: PartitionId, generation: u64, offset: i64) -> bool {
        match lock(&self.assigned).get_mut(&partition) {
            Some(owned) if owned.generation == generation => {
                owned.delivered = Some(owned.delivered.map_or(offset, |d| d.max(offset)));
                true
            }
            _ => false,
        }
    }

    /// Highest offset of `partition` handed to the application in its current assignment.
    pub fn max_delivered(&self, partition: PartitionId) -> Option<i64> {
        lock(&self.assigned)
            .get(&partition)
            .and_then(|o| o.delivered)
    }
}

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
    group: Option<(String, Arc<GroupShared>)>,
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

    /// A context for a member of a consumer group on `hub`.
    pub fn for_group(
        backend_id: &'static str,
        token_source: Option<Arc<TokenSource>>,
        hub: String,
        shared: Arc<GroupShared>,
    ) -> Self {
        Self {
            group: Some((hub, shared)),
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

impl ConsumerContext for EvhubContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some((hub, shared)) = &self.group else {
            return;
        };
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<PartitionId> = tpl
                    .elements_for_topic(hub)
                    .iter()
                    .filter_map(|e| PartitionId::try_from(e.partition()).ok())
                    .collect();
                // Stop handing out buffered events of these partitions first, then commit
                // what the application already committed but the broker has not confirmed.
                {
                    let mut assigned = lock(&shared.assigned);
                    for p in &revoked {
                        assigned.remove(p);
                    }
                }
                let pending = shared.take_pending(Some(&revoked));
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
        let Some((hub, shared)) = &self.group else {
            return;
        };
        if let Rebalance::Assign(tpl) = rebalance {
            let generation = {
                let mut g = lock(&shared.generation);
                *g += 1;
                *g
            };
            let mut assigned = lock(&shared.assigned);
            for e in tpl.elements_for_topic(hub) {
                if let Ok(p) = PartitionId::try_from(e.partition()) {
                    assigned.insert(
                        p,
                        Owned {
                            generation,
                            delivered: None,
                        },
                    );
                }
            }
            tracing::info!(
                backend = self.backend_id,
                hub = %hub,
                assigned = ?assigned.keys().collect::<Vec<_>>(),
                "partitions assigned"
            );
        }
    }
}
