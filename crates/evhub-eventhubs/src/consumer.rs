//! Consumer-group member on the SDK's `EventProcessor`.
//!
//! The processor balances partition ownership through the [`CheckpointStore`] and hands out a
//! `PartitionClient` per owned partition. Background tasks run the balancer, take partition
//! clients and pump their events into one channel that `recv` reads, so rebalancing proceeds
//! whether or not the application is inside `recv`. The store is wrapped to remember what this
//! member holds: commits check it, and `close` relinquishes it so the remaining members take
//! the partitions over at their next balancing pass instead of after ownership expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_messaging_eventhubs::models::{Checkpoint as SdkCheckpoint, Ownership, StartPositions};
use azure_messaging_eventhubs::processor::PartitionClient;
use azure_messaging_eventhubs::{
    CheckpointStore, EventProcessor, ProcessorStrategy, StartLocation, StartPosition,
};
use evhub_core::telemetry::{commit_span, receive_span};
use evhub_core::{
    Checkpoint, CommitOutcome, Consumer, Error, ErrorKind, InitialPosition, PartitionId,
    ReceivedEvent, Result,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, warn, Instrument};

use crate::connector::Connector;
use crate::convert::from_received;
use crate::error::{from_core, from_hubs};

/// How often the processor balances and renews its ownership claims.
const UPDATE_INTERVAL: Duration = Duration::from_secs(2);
/// When a claim not renewed for this long counts as abandoned (a member that crashed).
const OWNERSHIP_EXPIRY: Duration = Duration::from_secs(20);
/// Events buffered between the partition pumps and `recv`.
const BUFFER: usize = 1024;
const PREFETCH: u32 = 300;

/// What the pumps send to `recv`: the partition generation the event belongs to.
type Item = (PartitionId, u64, Result<ReceivedEvent>);

/// State shared by the member handle and its background tasks.
struct Shared {
    hub: String,
    group: String,
    namespace: String,
    store: Arc<TrackingStore>,
    /// Partitions currently read by this member, with a generation per acquisition.
    reading: SyncMutex<HashMap<PartitionId, u64>>,
    next_generation: AtomicU64,
}

impl Shared {
    fn is_current(&self, partition: PartitionId, generation: u64) -> bool {
        self.reading
            .lock()
            .map(|r| r.get(&partition) == Some(&generation))
            .unwrap_or(false)
    }
}

/// A member of a consumer group on one hub.
pub struct EventHubsConsumer {
    shared: Arc<Shared>,
    events: Mutex<mpsc::Receiver<Item>>,
    closed: Arc<AtomicBool>,
    parts: Arc<SyncMutex<Option<Parts>>>,
}

/// What `close` tears down.
struct Parts {
    processor: Arc<EventProcessor>,
    balancer: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    stop: watch::Sender<bool>,
    pumps_done: oneshot::Receiver<()>,
}

/// A partition to pump: client, partition and generation.
type Job = (Arc<PartitionClient>, PartitionId, u64);

/// The SDK's partition event stream is not `Send`, so the member's pumps run on a thread of
/// their own (a current-thread runtime with a `LocalSet`); events cross to `recv` through a
/// channel. The thread ends after the stop signal once every pump has closed its client.
fn start_pump_thread(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Item>,
    stop: watch::Receiver<bool>,
) -> Result<(mpsc::UnboundedSender<Job>, oneshot::Receiver<()>)> {
    let (jobs, mut job_rx) = mpsc::unbounded_channel::<Job>();
    let (done, pumps_done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Other, format!("starting partition pumps: {e}")))?;
    std::thread::Builder::new()
        .name(format!("evhub-eventhubs-{}", shared.group))
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let mut pumps = Vec::new();
                let mut stopped = stop.clone();
                loop {
                    let job = tokio::select! {
                        _ = stopped.changed() => break,
                        job = job_rx.recv() => job,
                    };
                    let Some((client, partition, generation)) = job else {
                        break;
                    };
                    pumps.retain(|p: &JoinHandle<()>| !p.is_finished());
                    pumps.push(tokio::task::spawn_local(pump(
                        client,
                        shared.clone(),
                        partition,
                        generation,
                        tx.clone(),
                        stop.clone(),
                    )));
                }
                for pump in pumps {
                    let _ = pump.await;
                }
            });
            let _ = done.send(());
        })
        .map_err(|e| Error::new(ErrorKind::Other, format!("starting partition pumps: {e}")))?;
    Ok((jobs, pumps_done))
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
    ) -> Result<Self> {
        let client = connector.consumer(hub, group).await?;
        let tracking = Arc::new(TrackingStore::new(store));
        let default = StartPosition {
            location: match initial {
                InitialPosition::Earliest => StartLocation::Earliest,
                InitialPosition::Latest => StartLocation::Latest,
            },
            // Also applies to checkpoints: resume *after* the committed event.
            inclusive: false,
        };
        let build = async {
            EventProcessor::builder()
                .with_load_balancing_strategy(ProcessorStrategy::Greedy)
                .with_update_interval(to_azure(UPDATE_INTERVAL))
                .with_partition_expiration_duration(to_azure(OWNERSHIP_EXPIRY))
                .with_prefetch(PREFETCH)
                .with_start_positions(StartPositions {
                    per_partition: HashMap::new(),
                    default,
                })
                .build(client, tracking.clone())
                .await
                .map_err(|e| from_hubs(&format!("joining group `{group}` on hub `{hub}`"), e))
        };
        let processor = connector.timed("joining the consumer group", build).await?;
        let shared = Arc::new(Shared {
            hub: hub.to_owned(),
            group: group.to_owned(),
            namespace: connector.namespace().to_owned(),
            store: tracking,
            reading: SyncMutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
        });
        let (tx, rx) = mpsc::channel(BUFFER);
        let (stop, stop_rx) = watch::channel(false);
        let (jobs, pumps_done) = start_pump_thread(shared.clone(), tx.clone(), stop_rx)?;
        let balancer = tokio::spawn(run_balancer(processor.clone(), shared.clone(), tx));
        let dispatcher = tokio::spawn(run_dispatcher(processor.clone(), shared.clone(), jobs));
        Ok(Self {
            shared,
            events: Mutex::new(rx),
            closed: Arc::new(AtomicBool::new(false)),
            parts: Arc::new(SyncMutex::new(Some(Parts {
                processor,
                balancer,
                dispatcher,
                stop,
                pumps_done,
            }))),
        })
    }
}

fn to_azure(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::seconds(30))
}

/// Runs the processor's balancing loop, restarting it after transient failures.
async fn run_balancer(processor: Arc<EventProcessor>, shared: Arc<Shared>, tx: mpsc::Sender<Item>) {
    loop {
        match processor.run().await {
            Ok(()) => return,
            Err(e) => {
                let error = from_hubs(
                    &format!("balancing group `{}` on hub `{}`", shared.group, shared.hub),
                    e,
                );
                warn!(error = %error, "event processor stopped; restarting");
                if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::Auth) {
                    let _ = tx.send((PartitionId::MAX, 0, Err(error))).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Takes each partition client the processor hands out and hands it to the pump thread.
async fn run_dispatcher(
    processor: Arc<EventProcessor>,
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
) {
    loop {
        let client = match processor.next_partition_client().await {
            Ok(client) => client,
            Err(e) => {
                debug!(error = %e, "no more partition clients");
                return;
            }
        };
        let Ok(partition) = client.get_partition_id().parse::<PartitionId>() else {
            warn!(
                partition = client.get_partition_id(),
                "non-numeric partition id"
            );
            continue;
        };
        let generation = shared.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut reading) = shared.reading.lock() {
            reading.insert(partition, generation);
        }
        if jobs.send((client, partition, generation)).is_err() {
            return;
        }
    }
}

/// Streams one owned partition into the member's channel until it is revoked or stopped.
async fn pump(
    client: Arc<PartitionClient>,
    shared: Arc<Shared>,
    partition: PartitionId,
    generation: u64,
    tx: mpsc::Sender<Item>,
    mut stop: watch::Receiver<bool>,
) {
    debug!(hub = %shared.hub, group = %shared.group, partition, generation, "partition acquired");
    {
        let mut stream = std::pin::pin!(client.stream_events());
        let mut verified: Option<std::time::Instant> = None;
        loop {
            let item = tokio::select! {
                _ = stop.changed() => break,
                item = stream.next() => item,
            };
            let item = match item {
                Some(Ok(data)) => {
                    // The SDK attaches a receiver lazily, so a member whose claim was just
                    // taken over can attach after the new owner and steal the link back for a
                    // moment (equal epochs: the last attach wins). Deliver only while the store
                    // names this member the owner; re-checked once per balancing interval.
                    if verified.is_none_or(|at| at.elapsed() >= UPDATE_INTERVAL) {
                        let fresh = verified.is_none();
                        if !shared.store.is_owner(&shared, partition, fresh).await {
                            debug!(partition, generation, "partition owned by another member");
                            break;
                        }
                        verified = Some(std::time::Instant::now());
                    }
                    from_received(&shared.hub, partition, &data)
                }
                Some(Err(e)) => {
                    let error = from_hubs(&format!("reading partition {partition}"), e);
                    // Conflict = another member took the partition (epoch steal or revocation).
                    if error.kind() != ErrorKind::Conflict && !error.is_retriable() {
                        let _ = tx.send((partition, generation, Err(error))).await;
                    } else {
                        debug!(error = %error, partition, generation, group = %shared.group, "partition released");
                    }
                    break;
                }
                None => {
                    debug!(partition, generation, "partition stream ended");
                    break;
                }
            };
            if tx.send((partition, generation, item)).await.is_err() {
                break;
            }
        }
    }
    if let Ok(mut reading) = shared.reading.lock() {
        if reading.get(&partition) == Some(&generation) {
            reading.remove(&partition);
        }
    }
    // Closing removes the client from the processor's map, so it can hand the partition out
    // again if this member still owns it.
    match Arc::try_unwrap(client) {
        Ok(client) => {
            if let Err(e) = client.close().await {
                debug!(error = %e, partition, "closing partition client");
            }
        }
        Err(_) => debug!(
            partition,
            generation, "partition client still shared; not closed"
        ),
    }
    debug!(partition, generation, "pump ended");
}

impl Parts {
    async fn shutdown(self, store: &TrackingStore) {
        self.balancer.abort();
        self.dispatcher.abort();
        let _ = self.balancer.await;
        let _ = self.dispatcher.await;
        let _ = self.stop.send(true);
        let _ = self.pumps_done.await;
        store.relinquish().await;
        if let Ok(processor) = Arc::try_unwrap(self.processor) {
            if let Err(e) = processor.close().await {
                debug!(error = %e, "closing event processor");
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
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed("consumer"));
            }
            let mut events = self.events.lock().await;
            let Some((partition, generation, item)) = events.recv().await else {
                return Err(Error::closed("consumer"));
            };
            drop(events);
            match item {
                // Events of a partition revoked since they were buffered go to its next owner.
                Ok(_) if !self.shared.is_current(partition, generation) => continue,
                Ok(event) => {
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
                Err(e) => return Err(e),
            }
        }
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<CommitOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("consumer"));
        }
        let shared = &self.shared;
        evhub_core::group::check_checkpoint(&shared.hub, checkpoint)?;
        let reading = shared
            .reading
            .lock()
            .map(|r| r.contains_key(&checkpoint.partition))
            .unwrap_or(false);
        // Own claim, own reader, and no newer claim by another member in the store (a listing
        // at most one balancing interval old).
        if !reading
            || !shared.store.holds(&checkpoint.partition.to_string())
            || !shared
                .store
                .is_owner(shared, checkpoint.partition, false)
                .await
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
            event_hub_name: shared.hub.clone(),
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
        let mut owned: Vec<PartitionId> = self
            .shared
            .reading
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default();
        // Ask the store rather than trusting the last claim: another member may have taken a
        // partition over since this member's last balancing pass.
        let in_store = self.shared.store.owned_in_store(&self.shared).await?;
        owned.retain(|p| in_store.contains(p));
        owned.sort_unstable();
        Ok(owned)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
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

/// Wraps the configured store and remembers the ownerships this member's processor holds
/// (the processor claims its whole set on every pass, so the last answer is the current set).
pub(crate) struct TrackingStore {
    inner: Arc<dyn CheckpointStore>,
    held: SyncMutex<HashMap<String, Ownership>>,
    /// The processor's owner id, learned from its claims.
    owner: SyncMutex<Option<String>>,
    /// The last ownership listing and when it was read, for periodic ownership re-checks.
    snapshot: SyncMutex<Option<(std::time::Instant, Vec<Ownership>)>>,
}

impl TrackingStore {
    fn new(inner: Arc<dyn CheckpointStore>) -> Self {
        Self {
            inner,
            held: SyncMutex::new(HashMap::new()),
            owner: SyncMutex::new(None),
            snapshot: SyncMutex::new(None),
        }
    }

    /// Partitions the store currently names this member the owner of.
    async fn owned_in_store(&self, shared: &Shared) -> Result<Vec<PartitionId>> {
        let Some(owner) = self.owner.lock().ok().and_then(|o| o.clone()) else {
            return Ok(Vec::new());
        };
        let all = self
            .list_ownerships(&shared.namespace, &shared.hub, &shared.group)
            .await
            .map_err(|e| from_core("listing partition ownership", e))?;
        Ok(all
            .iter()
            .filter(|o| o.owner_id.as_deref() == Some(&owner))
            .filter_map(|o| o.partition_id.parse().ok())
            .collect())
    }

    /// Whether the store currently names this member the owner of `partition`.
    async fn is_owner(&self, shared: &Shared, partition: PartitionId, fresh: bool) -> bool {
        let Some(owner) = self.owner.lock().ok().and_then(|o| o.clone()) else {
            return false;
        };
        let cached = self
            .snapshot
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .filter(|(at, _)| !fresh && at.elapsed() < UPDATE_INTERVAL)
            .map(|(_, all)| all);
        let all = match cached {
            Some(all) => all,
            None => match self
                .list_ownerships(&shared.namespace, &shared.hub, &shared.group)
                .await
            {
                Ok(all) => all,
                // The store is unreachable: keep reading; the balancer handles ownership loss.
                Err(e) => {
                    debug!(error = %e, "ownership check failed");
                    return true;
                }
            },
        };
        all.iter().any(|o| {
            o.partition_id == partition.to_string() && o.owner_id.as_deref() == Some(&owner)
        })
    }

    fn holds(&self, partition: &str) -> bool {
        self.held
            .lock()
            .map(|h| h.contains_key(partition))
            .unwrap_or(false)
    }

    /// Gives up every held partition so others can claim it at once.
    async fn relinquish(&self) {
        let held: Vec<Ownership> = self
            .held
            .lock()
            .map(|mut h| h.drain().map(|(_, o)| o).collect())
            .unwrap_or_default();
        if held.is_empty() {
            return;
        }
        let released: Vec<Ownership> = held
            .into_iter()
            .map(|mut o| {
                o.owner_id = None;
                o
            })
            .collect();
        if let Err(e) = self.inner.claim_ownership(&released).await {
            warn!(error = %e, "relinquishing partition ownership failed; it expires instead");
        }
    }
}

#[async_trait]
impl CheckpointStore for TrackingStore {
    async fn claim_ownership(
        &self,
        ownerships: &[Ownership],
    ) -> azure_core::Result<Vec<Ownership>> {
        if let Some(owner) = ownerships.iter().find_map(|o| o.owner_id.clone()) {
            if let Ok(mut known) = self.owner.lock() {
                known.get_or_insert(owner);
            }
        }
        let claimed = self.inner.claim_ownership(ownerships).await?;
        if let Ok(mut held) = self.held.lock() {
            held.clear();
            for o in claimed.iter().filter(|o| o.owner_id.is_some()) {
                held.insert(o.partition_id.clone(), o.clone());
            }
        }
        Ok(claimed)
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<SdkCheckpoint>> {
        self.inner
            .list_checkpoints(namespace, event_hub_name, consumer_group)
            .await
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        let all = self
            .inner
            .list_ownerships(namespace, event_hub_name, consumer_group)
            .await?;
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = Some((std::time::Instant::now(), all.clone()));
        }
        Ok(all)
    }

    async fn update_checkpoint(&self, checkpoint: SdkCheckpoint) -> azure_core::Result<()> {
        self.inner.update_checkpoint(checkpoint).await
    }
}
