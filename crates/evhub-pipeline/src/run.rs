//! The coordinator: receives from the source group, dispatches to lanes, tracks what is done
//! with a `CommitTracker`, commits gap-free checkpoints, follows rebalances, reports lag, and
//! drains on shutdown.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evhub_core::{
    CommitOutcome, CommitTracker, Consumer, Error, ErrorKind, PartitionId, ReceivedEvent, Result,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::builder::Pipeline;
use crate::lag::SharedOwned;
use crate::shutdown::ShutdownToken;
use crate::stats::{Counter, StatsSnapshot, StoppedPartition};
use crate::worker::{run_lane, Done, Shared, WorkItem};

/// How long one `recv_batch` waits before the loop looks at its timers again.
const RECV_WAIT: Duration = Duration::from_millis(100);
/// How often ownership is compared with the consumer's assignment.
const ASSIGNMENT_EVERY: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Runs until `shutdown` is triggered, the source consumer is closed, or a fatal error
    /// (a partition failed without dead-letter hub and `fail_fast`, a commit or receive error
    /// that is not retriable). Then it stops receiving, drains in-flight events (up to the
    /// drain timeout), commits what is done, flushes the sinks and leaves the group.
    ///
    /// Returns the final counters, or the error that ended it.
    pub async fn run(self, shutdown: ShutdownToken) -> Result<StatsSnapshot> {
        let consumer = self
            .source
            .consumer(&self.hub, self.options.clone())
            .await?;
        tracing::info!(
            source_backend = self.source.id(), hub = %self.hub, group = %self.options.group,
            sinks = self.sinks.len(), dead_letter = self.dead_letter.as_ref().map(|d| d.hub()),
            "pipeline started"
        );
        let stats = self.stats.clone();
        let sinks: Vec<_> = self.sinks.iter().map(|s| s.producer.clone()).collect();
        let mut coordinator = Coordinator::new(self, consumer.clone());
        let result = coordinator.run(shutdown).await;
        for sink in &sinks {
            if let Err(e) = sink.flush().await {
                tracing::warn!("pipeline: flushing sink `{}` failed: {e}", sink.hub());
            }
        }
        let closed = consumer.close().await;
        let snapshot = stats.snapshot();
        tracing::info!(
            received = snapshot.received,
            handled = snapshot.handled,
            skipped = snapshot.skipped,
            produced = snapshot.produced,
            retried = snapshot.retried,
            dead_lettered = snapshot.dead_lettered,
            committed = snapshot.committed,
            "pipeline stopped"
        );
        result?;
        closed?;
        Ok(snapshot)
    }
}

struct Lane {
    queue: mpsc::UnboundedSender<Vec<WorkItem>>,
}

struct Coordinator {
    pipeline_hub: String,
    source: Arc<dyn evhub_core::Backend>,
    consumer: Arc<dyn Consumer>,
    shared: Arc<Shared>,
    tracker: CommitTracker,
    lanes: HashMap<(PartitionId, usize), Lane>,
    epochs: HashMap<PartitionId, Arc<AtomicU64>>,
    workers: JoinSet<()>,
    done_tx: mpsc::UnboundedSender<Vec<Done>>,
    done_rx: mpsc::UnboundedReceiver<Vec<Done>>,
    in_flight: usize,
    in_flight_bytes: usize,
    last_received: HashMap<PartitionId, i64>,
    first_received: HashMap<PartitionId, i64>,
    stopped: HashMap<PartitionId, String>,
    assigned: BTreeSet<PartitionId>,
    fatal: Option<Error>,
    owned: SharedOwned,
}

impl Coordinator {
    fn new(p: Pipeline, consumer: Arc<dyn Consumer>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let concurrency = (p.settings.partition_concurrency > 0)
            .then(|| Arc::new(Semaphore::new(p.settings.partition_concurrency)));
        let shared = Arc::new(Shared {
            handler: p.handler,
            sinks: p.sinks,
            dead_letter: p.dead_letter,
            settings: p.settings,
            stats: p.stats,
            stop: ShutdownToken::new(),
            group: p.options.group,
            concurrency,
        });
        Self {
            pipeline_hub: p.hub,
            source: p.source,
            consumer,
            shared,
            tracker: CommitTracker::new(),
            lanes: HashMap::new(),
            epochs: HashMap::new(),
            workers: JoinSet::new(),
            done_tx,
            done_rx,
            in_flight: 0,
            in_flight_bytes: 0,
            last_received: HashMap::new(),
            first_received: HashMap::new(),
            stopped: HashMap::new(),
            assigned: BTreeSet::new(),
            fatal: None,
            owned: SharedOwned::default(),
        }
    }

    async fn run(&mut self, shutdown: ShutdownToken) -> Result<()> {
        let settings = self.shared.settings.clone();
        let mut commit_tick = interval(settings.commit_interval);
        commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut assignment_tick = interval(ASSIGNMENT_EVERY);
        assignment_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let probe = tokio::spawn(crate::lag::run_probe(
            self.source.clone(),
            self.pipeline_hub.clone(),
            self.shared.stats.clone(),
            self.owned.clone(),
            settings.lag_interval,
            self.shared.stop.clone(),
        ));
        let mut draining: Option<Instant> = None;
        let mut source_open = true;

        loop {
            if draining.is_none() && (shutdown.is_shutdown() || self.fatal.is_some()) {
                draining = Some(Instant::now() + settings.drain_timeout);
                tracing::info!(in_flight = self.in_flight, "pipeline: draining");
            }
            if let Some(deadline) = draining {
                if self.in_flight == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        in_flight = self.in_flight,
                        "pipeline: drain timeout; unfinished events are not committed and will be delivered again"
                    );
                    break;
                }
            }
            let room = settings.max_in_flight.saturating_sub(self.in_flight);
            // Refill only when a useful amount fits: topping up a full pipeline one event at a
            // time would hand the lanes tiny batches, one sink round trip each.
            let refill = settings.batch_size.min(settings.max_in_flight / 2).max(1);
            let can_receive = draining.is_none()
                && source_open
                && room >= refill
                && self.in_flight_bytes < settings.max_in_flight_bytes;
            let max = room.min(settings.batch_size.max(1) * 2);
            let drain_deadline =
                draining.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = shutdown.wait(), if draining.is_none() => {}
                // Timers before data: a busy source must not starve commits.
                _ = commit_tick.tick() => self.commit().await,
                _ = assignment_tick.tick() => self.check_assignment().await,
                Some(done) = self.done_rx.recv() => self.finished(done),
                batch = self.consumer.recv_batch(max, RECV_WAIT), if can_receive => match batch {
                    Ok(events) => self.dispatch(events),
                    Err(e) if e.kind() == ErrorKind::Closed => {
                        tracing::info!("pipeline: the source consumer was closed");
                        source_open = false;
                        self.shared.stop.shutdown();
                        draining.get_or_insert(Instant::now() + settings.drain_timeout);
                    }
                    Err(e) if e.is_retriable() => {
                        tracing::warn!("pipeline: receive failed, retrying: {e}");
                        tokio::time::sleep(RECV_WAIT).await;
                    }
                    Err(e) => self.fail(e),
                },
                _ = tokio::time::sleep_until(drain_deadline), if draining.is_some() => {}
            }
            if shutdown.is_shutdown() {
                self.shared.stop.shutdown();
            }
        }
        self.shared.stop.shutdown();
        // Close the lanes; workers finish or abandon what they hold and exit.
        self.lanes.clear();
        while let Ok(done) = self.done_rx.try_recv() {
            self.finished(done);
        }
        self.commit().await;
        // Final lag and progress, so the returned snapshot is current (bounded: metadata calls
        // on a failing service must not hold the shutdown).
        probe.abort();
        self.share_owned();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            crate::lag::probe(
                &self.source,
                &self.pipeline_hub,
                &self.shared.stats,
                &self.owned,
            ),
        )
        .await;
        self.workers.abort_all();
        while self.workers.join_next().await.is_some() {}
        self.shared.stats.set_in_flight(0);
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        if !self.stopped.is_empty() {
            let list: Vec<String> = self.stopped.values().cloned().collect();
            return Err(Error::new(ErrorKind::Other, list.join("; ")));
        }
        Ok(())
    }

    fn fail(&mut self, error: Error) {
        tracing::error!("pipeline: {error}");
        self.shared.stop.shutdown();
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }

    fn epoch(&mut self, partition: PartitionId) -> Arc<AtomicU64> {
        self.epochs.entry(partition).or_default().clone()
    }

    fn dispatch(&mut self, events: Vec<ReceivedEvent>) {
        // One stats update per partition and batch, not per event.
        let mut counts: Vec<(PartitionId, u64)> = Vec::new();
        for event in &events {
            match counts.iter_mut().find(|(p, _)| *p == event.partition) {
                Some((_, n)) => *n += 1,
                None => counts.push((event.partition, 1)),
            }
        }
        if !counts.is_empty() {
            self.shared.stats.received(&counts);
        }
        let mut batches: HashMap<(PartitionId, usize), Vec<WorkItem>> = HashMap::new();
        for event in events {
            let p = event.partition;
            if self.stopped.contains_key(&p) {
                continue;
            }
            // An offset at or below one already received means the partition restarted from
            // the group's checkpoint (revoked and assigned again between two checks): start
            // over for it, so no stale state commits anything.
            if self
                .last_received
                .get(&p)
                .is_some_and(|&last| event.offset <= last)
            {
                self.revoke(p, "partition restarted from its checkpoint");
            }
            if self.last_received.insert(p, event.offset).is_none() {
                // First event of this partition (in this run, or since it was revoked).
                self.first_received.entry(p).or_insert(event.offset);
                self.assigned.insert(p);
            }
            self.tracker.received(&event);
            let bytes = event_bytes(&event);
            self.in_flight += 1;
            self.in_flight_bytes += bytes;
            let epoch = self.epochs.entry(p).or_default();
            let item = WorkItem {
                epoch: epoch.load(Ordering::Acquire),
                event,
                bytes,
            };
            let lane = lane_of(&item.event, self.shared.settings.key_concurrency);
            batches.entry((p, lane)).or_default().push(item);
        }
        // One hand-over per lane and received batch: a lane starts on a whole share, not on
        // whatever trickled in while it woke up.
        for (key, items) in batches {
            let epoch = self.epoch(key.0);
            let lane = self.lanes.entry(key).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                self.workers.spawn(run_lane(
                    self.shared.clone(),
                    epoch,
                    rx,
                    self.done_tx.clone(),
                ));
                Lane { queue: tx }
            });
            if let Err(mpsc::error::SendError(items)) = lane.queue.send(items) {
                self.finished(items.into_iter().map(Done::Abandoned).collect());
                self.fail(Error::new(
                    ErrorKind::Other,
                    "pipeline: a partition worker ended unexpectedly",
                ));
            }
        }
        self.shared.stats.set_in_flight(self.in_flight);
    }

    fn finished(&mut self, done: Vec<Done>) {
        for d in done {
            let (item, failure) = match d {
                Done::Finished(item) => (item, None),
                Done::Abandoned(item) => {
                    self.release(&item);
                    continue;
                }
                Done::Failed(item, error) => (item, Some(error)),
            };
            self.release(&item);
            let p = item.event.partition;
            let current = self.epochs.get(&p).map(|e| e.load(Ordering::Acquire));
            if current != Some(item.epoch) {
                continue; // revoked meanwhile: its new owner handles it again
            }
            match failure {
                None => self.tracker.ack(&item.event),
                Some(error) => self.stop_partition(&item.event, error),
            }
        }
        self.shared.stats.set_in_flight(self.in_flight);
    }

    fn release(&mut self, item: &WorkItem) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(item.bytes);
    }

    fn stop_partition(&mut self, event: &ReceivedEvent, error: Error) {
        let p = event.partition;
        tracing::error!(
            hub = %event.hub, partition = p, offset = event.offset, "{error}"
        );
        self.shared.stats.stopped(StoppedPartition {
            partition: p,
            offset: event.offset,
            error: error.to_string(),
        });
        self.stopped.insert(p, error.to_string());
        // Queued events of this partition are abandoned; none is acknowledged past the failure.
        self.epoch(p).fetch_add(1, Ordering::AcqRel);
        if self.shared.settings.fail_fast {
            self.fail(error);
        }
    }

    fn revoke(&mut self, partition: PartitionId, why: &str) {
        tracing::info!(hub = %self.pipeline_hub, partition, "pipeline: {why}; dropping its unfinished work");
        self.epoch(partition).fetch_add(1, Ordering::AcqRel);
        self.tracker.forget(&self.pipeline_hub, partition);
        self.last_received.remove(&partition);
        self.first_received.remove(&partition);
        self.stopped.remove(&partition);
        self.assigned.remove(&partition);
    }

    /// Copies the owned partitions and first offsets for the lag probe.
    fn share_owned(&self) {
        let mut owned = self
            .owned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        owned.partitions = self.assigned.clone();
        owned.first_received = self.first_received.clone();
    }

    async fn commit(&mut self) {
        for checkpoint in self.tracker.ready() {
            match self.consumer.commit(&checkpoint).await {
                Ok(CommitOutcome::Committed) => {
                    self.tracker.committed(&checkpoint);
                    self.shared
                        .stats
                        .committed(checkpoint.partition, checkpoint.offset);
                }
                Ok(_) => {
                    self.shared.stats.add(Counter::CommitsNotOwned, 1);
                    self.revoke(checkpoint.partition, "commit answered NotOwned (rebalance)");
                }
                Err(e) if e.is_retriable() || e.kind() == ErrorKind::Conflict => {
                    tracing::warn!(
                        partition = checkpoint.partition,
                        "pipeline: commit failed, retrying later: {e}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::Closed => {}
                Err(e) => self.fail(e),
            }
        }
    }

    async fn check_assignment(&mut self) {
        let Ok(now) = self.consumer.assignment().await else {
            return;
        };
        let now: BTreeSet<PartitionId> = now.into_iter().collect();
        let revoked: Vec<PartitionId> = self.assigned.difference(&now).copied().collect();
        for p in revoked {
            self.revoke(p, "partition revoked");
        }
        self.assigned = now;
        self.share_owned();
        self.shared
            .stats
            .set_owned(&self.assigned.iter().copied().collect::<Vec<_>>());
    }
}

fn event_bytes(event: &ReceivedEvent) -> usize {
    let headers: usize = event.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    event.payload.len() + event.key.as_ref().map_or(0, |k| k.len()) + headers
}

fn lane_of(event: &ReceivedEvent, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    match &event.key {
        Some(key) => {
            let mut h = DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() % lanes as u64) as usize
        }
        None => 0,
    }
}
