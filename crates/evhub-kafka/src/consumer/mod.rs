//! Consumer-group member: a poll thread ([`driver`]) fetches and converts, the application
//! takes events from the member's [`GroupState`] queue — one lock per `recv`, one per
//! `recv_batch` — and commits explicitly.
//!
//! `commit(checkpoint)` commits `checkpoint.offset + 1` (Kafka's "next offset to read") and
//! waits for the broker. A commit still in flight when a rebalance revokes the partition is
//! committed by the revocation callback before the partition moves.

mod driver;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use evhub_core::{
    group, telemetry, Checkpoint, CommitOutcome, Consumer, ConsumerOptions, Error, ErrorKind,
    PartitionId, ReceivedEvent, Result,
};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::config::ClientKind;
use crate::context::EvhubContext;
use crate::error::map_kafka_error;
use crate::group::{GroupState, Taken};
use crate::util::{blocking, lock};
use driver::Member;

/// Longest `close` waits for the final commit and for leaving the group (capped by
/// `request_timeout_ms`); past it the poll thread finishes in the background.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A member of a Kafka consumer group on one topic.
pub struct KafkaConsumer {
    cluster: Cluster,
    hub: Arc<str>,
    group_name: String,
    group: Arc<GroupState>,
    /// The poll thread owns the librdkafka consumer; commits borrow it while it runs.
    member: Weak<Member>,
    stop: Arc<AtomicBool>,
    left: Mutex<Option<oneshot::Receiver<()>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("backend", &self.cluster.id())
            .field("hub", &self.hub)
            .field("group", &self.group_name)
            .finish()
    }
}

impl KafkaConsumer {
    pub(crate) async fn join(
        cluster: Cluster,
        hub: &str,
        options: ConsumerOptions,
    ) -> Result<Self> {
        let settings = cluster.settings();
        let hub: Arc<str> = Arc::from(hub);
        let initial = options
            .initial_position
            .unwrap_or(settings.initial_position);
        let group = Arc::new(GroupState::new(
            hub.clone(),
            initial,
            settings.request_timeout,
        ));
        let mut config = settings.client_config(ClientKind::GroupConsumer);
        config.set("group.id", &options.group);
        // Start offsets are set explicitly at each assignment (`initial_position` without a
        // checkpoint); this only covers offsets that fall out of range while reading.
        config.set("auto.offset.reset", "earliest");
        let context = EvhubContext::for_group(
            settings.backend_id,
            settings.token_source.clone(),
            group.clone(),
        );
        let consumer: Member = config
            .create_with_context(context)
            .map_err(|e| map_kafka_error("creating consumer", e))?;
        consumer
            .subscribe(&[&hub])
            .map_err(|e| map_kafka_error(&format!("subscribing to hub `{hub}`"), e))?;
        let consumer = Arc::new(consumer);
        let member = Arc::downgrade(&consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let (done, left) = oneshot::channel();
        driver::spawn(consumer, group.clone(), stop.clone(), done).map_err(driver::spawn_failed)?;
        tracing::info!(backend = settings.backend_id, hub = %hub, group = %options.group, "joined consumer group");
        Ok(Self {
            cluster,
            hub,
            group_name: options.group,
            group,
            member,
            stop,
            left: Mutex::new(Some(left)),
            closed: AtomicBool::new(false),
        })
    }

    fn member(&self) -> Result<Arc<Member>> {
        self.member
            .upgrade()
            .ok_or_else(|| Error::closed("consumer"))
    }

    fn not_owner(&self, checkpoint: &Checkpoint) -> CommitOutcome {
        group::not_owned(self.cluster.id(), &self.hub, &self.group_name, checkpoint)
    }

    fn span(&self, event: &ReceivedEvent) -> tracing::Span {
        telemetry::receive_span(
            self.cluster.id(),
            &self.hub,
            Some(&self.group_name),
            event.partition,
            event.offset,
        )
    }

    /// A checkpoint beyond anything this member received is checked against the log end.
    async fn check_offset(&self, checkpoint: &Checkpoint) -> Result<()> {
        if self
            .group
            .max_delivered(checkpoint.partition)
            .is_some_and(|o| checkpoint.offset <= o)
        {
            return Ok(());
        }
        let end = self
            .cluster
            .watermarks(&self.hub, checkpoint.partition)
            .await?
            .1;
        if checkpoint.offset >= end {
            return Err(Error::invalid_input(format!(
                "checkpoint offset {} is not an event of partition {} (next offset is {end})",
                checkpoint.offset, checkpoint.partition
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    fn hub(&self) -> &str {
        &self.hub
    }

    fn group(&self) -> &str {
        &self.group_name
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        loop {
            match self.group.take() {
                Taken::Ready(event) => {
                    let _span = self.span(&event).entered();
                    return Ok(event);
                }
                Taken::Ended(e) => return Err(e),
                Taken::Empty => {}
            }
            // Registered before the second look, so a push in between is not missed.
            let ready = self.group.ready();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match self.group.take() {
                Taken::Ready(event) => {
                    let _span = self.span(&event).entered();
                    return Ok(event);
                }
                Taken::Ended(e) => return Err(e),
                Taken::Empty => ready.await,
            }
        }
    }

    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.group.take_batch(max) {
                Taken::Ready(batch) => {
                    if let Some(first) = batch.first() {
                        let _span = self.span(first).entered();
                    }
                    return Ok(batch);
                }
                Taken::Ended(e) => return Err(e),
                Taken::Empty => {}
            }
            let ready = self.group.ready();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match self.group.take_batch(max) {
                Taken::Ready(batch) => return Ok(batch),
                Taken::Ended(e) => return Err(e),
                Taken::Empty => {
                    if tokio::time::timeout_at(deadline, ready).await.is_err() {
                        tracing::trace!(hub = %self.hub, "recv_batch: nothing within {wait:?}");
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        let span = telemetry::commit_span(
            self.cluster.id(),
            &self.hub,
            &self.group_name,
            checkpoint.partition,
            checkpoint.offset,
        );
        self.commit_inner(checkpoint).instrument(span).await
    }

    async fn assignment(&self) -> Result<Vec<PartitionId>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        Ok(self.group.assignment())
    }

    async fn close(&self) -> Result<()> {
        self.close_inner().await
    }
}

impl KafkaConsumer {
    async fn commit_inner(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        group::check_checkpoint(&self.hub, checkpoint)?;
        self.check_offset(checkpoint).await?;
        let partition = checkpoint.partition;
        if !self.group.owns(partition) {
            return Ok(self.not_owner(checkpoint));
        }
        let next = checkpoint.offset + 1;
        self.group.add_pending(partition, next);
        let member = self.member()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.hub, partition as i32, Offset::Offset(next))
            .map_err(|e| map_kafka_error("building commit", e))?;
        // The handle is dropped on the blocking thread: if it is the last one, dropping it
        // leaves the group, which waits for the broker.
        let result = blocking(move || {
            let result = member.commit(&list, CommitMode::Sync);
            drop(member);
            result
        })
        .await?;
        self.group.confirm(partition, next);
        match result {
            Ok(()) => Ok(CommitOutcome::Committed),
            Err(e) => {
                let revoked = !self.group.owns(partition);
                let state_error = matches!(
                    e,
                    KafkaError::ConsumerCommit(RDKafkaErrorCode::State)
                        | KafkaError::ConsumerCommit(RDKafkaErrorCode::AssignmentLost)
                );
                let err = map_kafka_error(&format!("committing to hub `{}`", self.hub), e);
                if revoked || state_error || err.kind() == ErrorKind::Conflict {
                    tracing::debug!("commit refused by the group coordinator: {err}");
                    Ok(self.not_owner(checkpoint))
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Ends `recv` at once, then lets the poll thread commit what is in flight and leave the
    /// group, waiting at most [`CLOSE_TIMEOUT`] (or `request_timeout_ms`, if shorter).
    async fn close_inner(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.group.close();
        self.stop.store(true, Ordering::Release);
        let Some(left) = lock(&self.left).take() else {
            return Ok(());
        };
        let bound = CLOSE_TIMEOUT.min(self.cluster.settings().request_timeout);
        match tokio::time::timeout(bound, left).await {
            Ok(_) => {
                tracing::info!(hub = %self.hub, group = %self.group_name, "left consumer group")
            }
            Err(_) => tracing::warn!(
                hub = %self.hub,
                group = %self.group_name,
                "leaving the group did not finish within {bound:?} (broker unreachable?); it continues in the background"
            ),
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // A dropped member leaves the group: its poll thread sees the flag, leaves and ends.
        self.group.close();
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
