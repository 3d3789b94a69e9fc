//! Consumer-group member on rdkafka's `StreamConsumer`.
//!
//! A background task keeps polling librdkafka, so heartbeats, rebalances and the rebalance
//! callbacks run even while the application is busy between two `recv` calls. Fetched events
//! wait in a bounded queue (in batches of what librdkafka had ready) tagged with the assignment generation of their partition; events of
//! a partition that was revoked meanwhile are dropped there, and the next owner reads them
//! again from the last committed offset (at-least-once).
//!
//! `commit(checkpoint)` commits `checkpoint.offset + 1` (Kafka's "next offset to read") and
//! waits for the broker. A commit still in flight when a rebalance revokes the partition is
//! committed by the revocation callback before the partition moves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use evhub_core::{
    group, telemetry, Checkpoint, CommitOutcome, Consumer, ConsumerOptions, Error, ErrorKind,
    InitialPosition, PartitionId, ReceivedEvent, Result,
};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::backend::{blocking, KafkaBackend};
use crate::config::ClientKind;
use crate::context::{lock, EvhubContext, GroupShared};
use crate::error::map_kafka_error;

/// Batches fetched ahead of the application, and events per batch.
const QUEUE_DEPTH: usize = 8;
const BATCH_MAX: usize = 256;

type Member = StreamConsumer<EvhubContext>;

enum Item {
    Event(ReceivedEvent, u64),
    Error(Error),
}

/// A member of a Kafka consumer group on one topic.
pub struct KafkaConsumer {
    backend: KafkaBackend,
    hub: String,
    group: String,
    shared: Arc<GroupShared>,
    consumer: Mutex<Option<Arc<Member>>>,
    queue: tokio::sync::Mutex<(mpsc::Receiver<Vec<Item>>, VecDeque<Item>)>,
    stop: watch::Sender<bool>,
    driver: Mutex<Option<tokio::task::JoinHandle<Arc<Member>>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("backend", &self.backend.settings().backend_id)
            .field("hub", &self.hub)
            .field("group", &self.group)
            .finish()
    }
}

/// Converts a librdkafka message into an owned evhub event.
pub(crate) fn received_event(message: &BorrowedMessage<'_>) -> Option<ReceivedEvent> {
    let partition = PartitionId::try_from(message.partition()).ok()?;
    let enqueued_at = message
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ReceivedEvent {
        hub: message.topic().into(),
        partition,
        offset: message.offset(),
        service_offset: None,
        enqueued_at: enqueued_at.filter(|t| *t > SystemTime::UNIX_EPOCH),
        key: message.key().map(Bytes::copy_from_slice),
        payload: message
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        headers,
    })
}

impl KafkaConsumer {
    pub(crate) async fn join(
        backend: KafkaBackend,
        hub: String,
        options: ConsumerOptions,
    ) -> Result<Self> {
        let settings = backend.settings();
        let initial = options
            .initial_position
            .unwrap_or(settings.initial_position);
        let shared = Arc::new(GroupShared::default());
        let mut config = settings.client_config(ClientKind::GroupConsumer);
        config.set("group.id", &options.group);
        config.set(
            "auto.offset.reset",
            match initial {
                InitialPosition::Earliest => "earliest",
                InitialPosition::Latest => "latest",
            },
        );
        let context = EvhubContext::for_group(
            settings.backend_id,
            settings.token_source.clone(),
            hub.clone(),
            shared.clone(),
        );
        let consumer: Member = config
            .create_with_context(context)
            .map_err(|e| map_kafka_error("creating consumer", e))?;
        consumer
            .subscribe(&[&hub])
            .map_err(|e| map_kafka_error(&format!("subscribing to hub `{hub}`"), e))?;
        let consumer = Arc::new(consumer);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (stop, stop_rx) = watch::channel(false);
        let driver = tokio::spawn(drive(consumer.clone(), shared.clone(), tx, stop_rx));
        tracing::info!(backend = settings.backend_id, hub = %hub, group = %options.group, "joined consumer group");
        Ok(Self {
            backend,
            hub,
            group: options.group,
            shared,
            consumer: Mutex::new(Some(consumer)),
            queue: tokio::sync::Mutex::new((rx, VecDeque::new())),
            stop,
            driver: Mutex::new(Some(driver)),
            closed: AtomicBool::new(false),
        })
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        Ok(())
    }

    fn member(&self) -> Result<Arc<Member>> {
        lock(&self.consumer)
            .clone()
            .ok_or_else(|| Error::closed("consumer"))
    }

    fn not_owner(&self, checkpoint: &Checkpoint) -> CommitOutcome {
        group::not_owned(
            self.backend.settings().backend_id,
            &self.hub,
            &self.group,
            checkpoint,
        )
    }

    /// A checkpoint beyond anything this member received is checked against the log end.
    async fn check_offset(&self, checkpoint: &Checkpoint) -> Result<()> {
        if checkpoint.offset < 0 {
            return Err(Error::invalid_input(format!(
                "checkpoint offset {} is negative",
                checkpoint.offset
            )));
        }
        if self
            .shared
            .max_delivered(checkpoint.partition)
            .is_some_and(|o| checkpoint.offset <= o)
        {
            return Ok(());
        }
        let end = self
            .backend
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

/// Polls librdkafka until stopped, forwarding events tagged with their assignment generation.
async fn drive(
    consumer: Arc<Member>,
    shared: Arc<GroupShared>,
    tx: mpsc::Sender<Vec<Item>>,
    mut stop: watch::Receiver<bool>,
) -> Arc<Member> {
    loop {
        let first = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            message = consumer.recv() => message,
        };
        // Take what librdkafka already has queued without waiting: one hand-over per batch
        // instead of one cross-thread wake-up per event.
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Some(item) = to_item(&shared, message) {
                batch.push(item);
            }
            if batch.len() < BATCH_MAX {
                next = consumer.recv().now_or_never();
            }
        }
        if batch.is_empty() {
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            sent = tx.send(batch) => if sent.is_err() { break },
        }
    }
    consumer
}

fn to_item(
    shared: &GroupShared,
    message: std::result::Result<BorrowedMessage<'_>, KafkaError>,
) -> Option<Item> {
    match message {
        Ok(message) => {
            let event = received_event(&message)?;
            // Tagged now: rebalance callbacks run on this task, so the generation is exact.
            let generation = shared.generation_of(event.partition)?;
            Some(Item::Event(event, generation))
        }
        Err(e) => {
            let err = map_kafka_error("consuming", e);
            match err.kind() {
                // Transient fetch problems are retried by librdkafka itself.
                ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Other => {
                    tracing::debug!("consumer: {err}");
                    None
                }
                _ => Some(Item::Error(err)),
            }
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    fn hub(&self) -> &str {
        &self.hub
    }

    fn group(&self) -> &str {
        &self.group
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        self.ensure_open()?;
        let mut stop = self.stop.subscribe();
        let mut guard = self.queue.lock().await;
        let (queue, buffer) = &mut *guard;
        loop {
            self.ensure_open()?;
            if buffer.is_empty() {
                let batch = tokio::select! {
                    batch = queue.recv() => batch,
                    _ = stop.wait_for(|s| *s) => None,
                };
                match batch {
                    Some(batch) => buffer.extend(batch),
                    None => return Err(Error::closed("consumer")),
                }
            }
            match buffer.pop_front() {
                None => continue,
                Some(Item::Error(e)) => return Err(e),
                Some(Item::Event(event, generation)) => {
                    if !self
                        .shared
                        .deliver(event.partition, generation, event.offset)
                    {
                        continue;
                    }
                    let _span = telemetry::receive_span(
                        self.backend.settings().backend_id,
                        &self.hub,
                        Some(&self.group),
                        event.partition,
                        event.offset,
                    )
                    .entered();
                    return Ok(event);
                }
            }
        }
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        self.ensure_open()?;
        let span = telemetry::commit_span(
            self.backend.settings().backend_id,
            &self.hub,
            &self.group,
            checkpoint.partition,
            checkpoint.offset,
        );
        self.commit_inner(checkpoint).instrument(span).await
    }

    async fn assignment(&self) -> Result<Vec<PartitionId>> {
        self.ensure_open()?;
        Ok(self.shared.assignment())
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
        if self.shared.generation_of(partition).is_none() {
            return Ok(self.not_owner(checkpoint));
        }
        let next = checkpoint.offset + 1;
        self.shared.add_pending(partition, next);
        let member = self.member()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.hub, partition as i32, Offset::Offset(next))
            .map_err(|e| map_kafka_error("building commit", e))?;
        let result = blocking(move || member.commit(&list, CommitMode::Sync)).await?;
        match result {
            Ok(()) => {
                self.shared.confirm(partition, next);
                Ok(CommitOutcome::Committed)
            }
            Err(e) => {
                self.shared.confirm(partition, next);
                let revoked = self.shared.generation_of(partition).is_none();
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

    async fn close_inner(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = self.stop.send(true);
        let driver = lock(&self.driver).take();
        let driven = match driver {
            Some(driver) => driver.await.ok(),
            None => None,
        };
        let Some(member) = lock(&self.consumer).take() else {
            return Ok(());
        };
        // The driver's handle must be gone too, or the last drop would happen elsewhere.
        drop(driven);
        let hub = self.hub.clone();
        let shared = self.shared.clone();
        // Commit what is still in flight, then leave the group (the revocation callback runs
        // during the close) so the partitions move to the other members right away.
        blocking(move || {
            let pending = shared.take_pending(None);
            if !pending.is_empty() {
                let mut list = TopicPartitionList::new();
                for (p, next) in &pending {
                    let _ = list.add_partition_offset(&hub, *p as i32, Offset::Offset(*next));
                }
                if let Err(e) = member.commit(&list, CommitMode::Sync) {
                    tracing::warn!(hub = %hub, "final commit failed: {e}");
                }
            }
            member.unsubscribe();
            drop(member);
        })
        .await?;
        tracing::info!(hub = %self.hub, group = %self.group, "left consumer group");
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // A dropped member leaves the group: the driver drops its consumer on a blocking thread.
        let _ = self.stop.send(true);
        let member = lock(&self.consumer).take();
        let driver = lock(&self.driver).take();
        if let (Some(member), Ok(handle)) = (member, tokio::runtime::Handle::try_current()) {
            // Leaving the group waits for the broker: not on a runtime worker thread.
            let blocking = handle.clone();
            handle.spawn(async move {
                let driven = match driver {
                    Some(d) => d.await.ok(),
                    None => None,
                };
                drop(blocking.spawn_blocking(move || {
                    drop(driven);
                    drop(member);
                }));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Instant;

    use evhub_core::config::KafkaConfig;
    use evhub_core::{Backend, Event, HubOptions};
    use rdkafka::consumer::BaseConsumer;

    use super::*;

    /// A checkpoint the application committed but the broker had not confirmed yet when the
    /// partition was revoked is committed by the revocation callback.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocation_commits_pending_checkpoints() {
        let Ok(bootstrap) = std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP") else {
            eprintln!("revocation_commits_pending_checkpoints: skipped: no Kafka broker; run scripts/test.sh");
            return;
        };
        let mut config = KafkaConfig::new(bootstrap);
        config.session_timeout_ms = Some(6_000);
        let backend = KafkaBackend::connect(&config).await.unwrap();
        let hub = format!("evhub-revoke-{}", uuid::Uuid::new_v4().simple());
        backend
            .create_hub(&hub, HubOptions::with_partitions(1))
            .await
            .unwrap();
        let events = (0..10).map(|i| Event::new(format!("e{i}"))).collect();
        backend
            .producer(&hub)
            .await
            .unwrap()
            .send_batch(events)
            .await
            .unwrap();
        let group = format!("evhub-revoke-g-{}", uuid::Uuid::new_v4().simple());
        let a = KafkaConsumer::join(backend.clone(), hub.clone(), ConsumerOptions::new(&group))
            .await
            .unwrap();
        for _ in 0..10 {
            tokio::time::timeout(Duration::from_secs(30), a.recv())
                .await
                .unwrap()
                .unwrap();
        }
        // As if `commit` of offset 5 had been called and its broker round trip not yet run.
        a.shared.add_pending(0, 6);
        let generation = a.shared.generation_of(0).unwrap();
        let b = KafkaConsumer::join(backend.clone(), hub.clone(), ConsumerOptions::new(&group))
            .await
            .unwrap();
        // Joining b makes the group rebalance: a's partition is revoked (and reassigned).
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.shared.generation_of(0) == Some(generation) {
            assert!(Instant::now() < deadline, "no rebalance within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            a.shared.take_pending(None).is_empty(),
            "pending checkpoint left behind"
        );
        let probe: BaseConsumer = backend
            .settings()
            .client_config(ClientKind::Reader)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition(&hub, 0);
        let committed = blocking(move || probe.committed_offsets(list, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        let offset = committed.find_partition(&hub, 0).unwrap().offset();
        assert_eq!(offset, Offset::Offset(6));
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    #[test]
    fn pending_checkpoints_keep_the_highest_and_confirm_clears() {
        let shared = GroupShared::default();
        shared.add_pending(1, 5);
        shared.add_pending(1, 3);
        shared.add_pending(2, 9);
        shared.confirm(2, 8); // an older commit's confirmation keeps the newer pending one
        let mut pending = shared.take_pending(Some(&[1, 2, 3]));
        pending.sort_unstable();
        assert_eq!(pending, vec![(1, 5), (2, 9)]);
        shared.add_pending(4, 2);
        shared.confirm(4, 2);
        assert!(shared.take_pending(None).is_empty());
    }
}
