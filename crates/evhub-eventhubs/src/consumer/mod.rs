//! Consumer-group member on the SDK's `EventProcessor`.
//!
//! The processor balances partition ownership through the checkpoint store and hands out a
//! `PartitionClient` per owned partition. Background work, one concern per module:
//! - [`balancer`]: the processor's balancing loop, and what its failures mean;
//! - [`dispatcher`]: takes the partition clients the processor hands out;
//! - [`pump`]: streams each owned partition into one channel of [`Item`]s that `recv` reads;
//! - [`store`]: the store wrapper that remembers what this member holds;
//! - [`processor`]: builds the SDK processor on a connection and runs balancer and dispatcher;
//! - [`supervisor`]: replaces a connection the SDK cannot repair;
//! - [`shutdown`]: leaving the group within bounded time.
//!
//! Rebalancing proceeds whether or not the application is inside `recv`.

mod acquisition;
mod balancer;
mod dispatcher;
pub(crate) mod options;
mod processor;
mod pump;
mod shutdown;
mod stall;
mod state;
mod store;
mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_messaging_eventhubs::models::Checkpoint as SdkCheckpoint;
use azure_messaging_eventhubs::CheckpointStore;
use evhub_core::telemetry::{commit_span, receive_span};
use evhub_core::{
    Checkpoint, CommitOutcome, Consumer, Error, InitialPosition, PartitionId, ReceivedEvent, Result,
};
use tokio::sync::{mpsc, watch, Mutex, RwLock};
use tracing::Instrument;

use crate::connector::Connector;
use crate::error::from_core;
use options::ProcessorOptions;
use shutdown::{Parts, STEP_TIMEOUT};
use state::{Item, Shared, Sticky};
use store::{GroupKey, TrackingStore};

/// Events buffered between the partition pumps and `recv`.
const BUFFER: usize = 1024;

/// A member of a consumer group on one hub.
pub struct EventHubsConsumer {
    shared: Arc<Shared>,
    events: Mutex<mpsc::Receiver<Item>>,
    closed: AtomicBool,
    /// The error that ended the member, replayed by every later call.
    fatal: Sticky,
    /// An error met while filling a batch, reported by the next call.
    pending: SyncMutex<Option<Error>>,
    /// Commits in flight hold it shared; `close` waits for them before releasing partitions.
    commits: RwLock<()>,
    parts: SyncMutex<Option<Parts>>,
}

impl std::fmt::Debug for EventHubsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubsConsumer")
            .field("hub", &self.shared.hub)
            .field("group", &self.shared.group)
            .finish_non_exhaustive()
    }
}

impl EventHubsConsumer {
    pub(crate) async fn join(
        connector: &Connector,
        store: Arc<dyn CheckpointStore>,
        hub: &str,
        group: &str,
        initial: InitialPosition,
        options: &ProcessorOptions,
    ) -> Result<Self> {
        evhub_core::group::validate_hub_name(hub)?;
        let namespace = options
            .checkpoint_namespace
            .clone()
            .unwrap_or_else(|| connector.namespace().to_owned());
        let key = GroupKey {
            namespace: namespace.clone(),
            hub: hub.to_owned(),
            group: group.to_owned(),
        };
        let reading: acquisition::Reading = Arc::default();
        let tracking = Arc::new(TrackingStore::new(
            store,
            key,
            options.load_balancing_interval,
            reading.clone(),
        ));
        let shared = Arc::new(Shared {
            hub: Arc::from(hub),
            group: group.to_owned(),
            namespace,
            options: options.clone(),
            store: tracking,
            reading,
            next_generation: AtomicU64::new(1),
            failures: AtomicU32::new(0),
        });
        let (tx, rx) = mpsc::channel(BUFFER);
        let (stop, stop_rx) = watch::channel(false);
        let (jobs, pumps_done) = pump::start_pump_thread(shared.clone(), tx.clone(), stop_rx)?;
        let launcher = Arc::new(processor::Launcher {
            connector: connector.clone(),
            initial,
            shared: shared.clone(),
            tx,
            jobs,
        });
        let running = match launcher.launch().await {
            Ok(running) => running,
            Err(e) => {
                let _ = stop.send(true);
                return Err(e);
            }
        };
        let running = Arc::new(Mutex::new(Some(running)));
        let supervisor = tokio::spawn(supervisor::run_supervisor(launcher, running.clone()));
        Ok(Self {
            shared,
            events: Mutex::new(rx),
            closed: AtomicBool::new(false),
            fatal: Sticky::default(),
            pending: SyncMutex::new(None),
            commits: RwLock::new(()),
            parts: SyncMutex::new(Some(Parts {
                running,
                supervisor,
                stop,
                pumps_done,
            })),
        })
    }

    /// An error to report before reading: closed, the member's fatal error, or one kept from
    /// the previous batch.
    fn before_read(&self) -> Option<Error> {
        if self.closed.load(Ordering::Acquire) {
            return Some(Error::closed("consumer"));
        }
        if let Some(fatal) = self.fatal.get() {
            return Some(fatal);
        }
        self.pending.lock().ok().and_then(|mut p| p.take())
    }

    /// The channel ended: every sender is gone, which happens only after close or a fatal
    /// error.
    fn ended(&self) -> Error {
        self.fatal
            .get()
            .unwrap_or_else(|| Error::closed("consumer"))
    }

    /// What `recv` makes of an item: an event, an error to report, or `None` to skip it (an
    /// event of a partition revoked since it was buffered goes to the partition's next owner).
    fn accept(&self, item: Item) -> Option<Result<ReceivedEvent>> {
        match item {
            Item::Event {
                partition,
                generation,
                event,
            } => self
                .shared
                .hand_over(partition, generation, event.offset)
                .then_some(Ok(event)),
            Item::PartitionFailed(error) | Item::Stalled(error) => Some(Err(error)),
            Item::Fatal(error) => {
                self.fatal.set(&error);
                Some(Err(error))
            }
        }
    }
}

#[async_trait]
impl Consumer for EventHubsConsumer {
    fn hub(&self) -> &str {
        &self.shared.hub
    }

    fn group(&self) -> &str {
        &self.shared.group
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        loop {
            if let Some(e) = self.before_read() {
                return Err(e);
            }
            let mut events = self.events.lock().await;
            let Some(item) = events.recv().await else {
                return Err(self.ended());
            };
            drop(events);
            if let Some(result) = self.accept(item) {
                let event = result?;
                let _span = receive_span(
                    "eventhubs",
                    &event.hub,
                    Some(&self.shared.group),
                    event.partition,
                    event.offset,
                )
                .entered();
                return Ok(event);
            }
        }
    }

    /// Hands over what the pumps already fetched in one step: waits at most `wait` for the
    /// first event, then takes what is buffered without waiting.
    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if let Some(e) = self.before_read() {
            return Err(e);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let Ok(mut events) = tokio::time::timeout_at(deadline, self.events.lock()).await else {
            return Ok(Vec::new());
        };
        // Cancel-safe: an item leaves the channel only in a step with no await after it.
        let first = loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(None) => return Err(self.ended()),
                Ok(Some(item)) => match self.accept(item) {
                    None => continue,
                    Some(result) => break result?,
                },
            }
        };
        let _span = receive_span(
            "eventhubs",
            &first.hub,
            Some(&self.shared.group),
            first.partition,
            first.offset,
        )
        .entered();
        let mut batch = Vec::with_capacity(max.min(BUFFER));
        batch.push(first);
        while batch.len() < max {
            let Ok(item) = events.try_recv() else { break };
            match self.accept(item) {
                None => {}
                Some(Ok(event)) => batch.push(event),
                Some(Err(e)) => {
                    // Hand over the events in hand; the error is the next call's answer.
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.get_or_insert(e);
                    }
                    break;
                }
            }
        }
        Ok(batch)
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        let _in_flight = self.commits.read().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        let shared = &self.shared;
        evhub_core::group::check_checkpoint(&shared.hub, checkpoint)?;
        // Own reader, own claim, and no newer claim by another member in the store (a listing
        // at most one balancing interval old).
        if !shared.is_reading(checkpoint.partition)
            || !shared.store.holds(checkpoint.partition)
            || !shared.store.is_owner(checkpoint.partition, false).await
        {
            return Ok(evhub_core::group::not_owned(
                "eventhubs",
                &shared.hub,
                &shared.group,
                checkpoint,
            ));
        }
        let span = commit_span(
            "eventhubs",
            &shared.hub,
            &shared.group,
            checkpoint.partition,
            checkpoint.offset,
        );
        let record = SdkCheckpoint {
            fully_qualified_namespace: shared.namespace.clone(),
            event_hub_name: shared.hub.to_string(),
            consumer_group: shared.group.clone(),
            partition_id: checkpoint.partition.to_string(),
            offset: checkpoint.service_offset.clone(),
            sequence_number: Some(checkpoint.offset),
        };
        shared
            .store
            .inner
            .update_checkpoint(record)
            .instrument(span)
            .await
            .map_err(|e| from_core("committing a checkpoint", e))?;
        Ok(CommitOutcome::Committed)
    }

    async fn assignment(&self) -> Result<Vec<PartitionId>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        let mut owned = self.shared.reading();
        // Ask the store rather than trusting the last claim: another member may have taken a
        // partition over since this member's last balancing pass.
        let in_store = self.shared.store.owned_in_store().await?;
        owned.retain(|p| in_store.contains(p));
        owned.sort_unstable();
        Ok(owned)
    }

    /// Leaves the group: waits (bounded) for commits in flight, so everything the application
    /// committed is stored, then stops reading and releases the partitions at once. Returns
    /// within about four steps of 5 s each even when the service and the store are gone.
    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        if tokio::time::timeout(STEP_TIMEOUT, self.commits.write())
            .await
            .is_err()
        {
            tracing::warn!("commits still in flight after {STEP_TIMEOUT:?}; leaving anyway");
        }
        let parts = self.parts.lock().ok().and_then(|mut p| p.take());
        if let Some(parts) = parts {
            parts.shutdown(&self.shared.store).await;
        }
        Ok(())
    }
}

impl Drop for EventHubsConsumer {
    fn drop(&mut self) {
        // A dropped member leaves the group: shut down in the background.
        self.closed.store(true, Ordering::Release);
        let parts = self.parts.lock().ok().and_then(|mut p| p.take());
        if let (Some(parts), Ok(runtime)) = (parts, tokio::runtime::Handle::try_current()) {
            let shared = self.shared.clone();
            runtime.spawn(async move { parts.shutdown(&shared.store).await });
        }
    }
}
