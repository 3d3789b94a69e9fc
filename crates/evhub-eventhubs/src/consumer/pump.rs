//! The partition pumps: one task per owned partition streams its events into the member's
//! channel.
//!
//! The SDK's partition event stream is not `Send`, so a member's pumps run on a thread of their
//! own (a current-thread runtime with a `LocalSet`); events cross to `recv` through a channel.
//! The thread ends after the stop signal once every pump has closed its client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::processor::PartitionClient;
use evhub_core::{Error, ErrorKind, PartitionId, Result};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::debug;

use super::acquisition::Progress;
use super::state::{Item, Shared};
use crate::convert::from_received;
use crate::error::from_hubs;

/// How long a pump that met an undecodable event waits for the application to take the
/// events before it.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How long closing one partition client may take (the server may be gone).
const CLIENT_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A partition to pump: client, partition and generation.
pub(crate) struct Job {
    pub client: Arc<PartitionClient>,
    pub partition: PartitionId,
    pub generation: u64,
    /// Fires when the acquisition was ended by another task (taken over).
    pub ended: Arc<Notify>,
    /// Where the pump reports its progress.
    pub progress: Arc<Progress>,
}

/// Starts the pump thread; returns where to send jobs and a signal that fires when every pump
/// has ended after `stop`.
pub(crate) fn start_pump_thread(
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
                let mut pumps: Vec<JoinHandle<()>> = Vec::new();
                let mut stopped = stop.clone();
                loop {
                    let job = tokio::select! {
                        _ = stopped.changed() => break,
                        job = job_rx.recv() => job,
                    };
                    let Some(job) = job else { break };
                    pumps.retain(|p| !p.is_finished());
                    pumps.push(tokio::task::spawn_local(pump(
                        job,
                        shared.clone(),
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

/// Streams one owned partition into the member's channel until it is revoked or stopped.
async fn pump(
    job: Job,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Item>,
    mut stop: watch::Receiver<bool>,
) {
    let Job {
        client,
        partition,
        generation,
        ended,
        progress,
    } = job;
    debug!(hub = %shared.hub, group = %shared.group, partition, generation, "partition acquired");
    let recheck = shared.options.load_balancing_interval;
    {
        let mut stream = std::pin::pin!(client.stream_events());
        let mut verified: Option<Instant> = None;
        let mut delivered: Option<i64> = None;
        let mut replayed: u64 = 0;
        let mut undecodable: Option<Error> = None;
        loop {
            progress.waiting.store(true, Ordering::Relaxed);
            let item = tokio::select! {
                _ = stop.changed() => break,
                _ = ended.notified() => {
                    debug!(partition, generation, "partition taken over; pump stops");
                    break;
                }
                item = stream.next() => item,
            };
            progress.waiting.store(false, Ordering::Relaxed);
            let item = match item {
                Some(Ok(data)) => {
                    // The SDK attaches a receiver lazily, so a member whose claim was just
                    // taken over can attach after the new owner and steal the link back for a
                    // moment (equal epochs: the last attach wins). Deliver only while the store
                    // names this member the owner; re-checked once per balancing interval.
                    if verified.is_none_or(|at| at.elapsed() >= recheck) {
                        let fresh = verified.is_none();
                        if !shared.store.is_owner(partition, fresh).await {
                            debug!(partition, generation, "partition owned by another member");
                            break;
                        }
                        verified = Some(Instant::now());
                    }
                    // After a dropped connection the SDK's receiver reattaches at the position it
                    // was opened with and delivers those events again: skip what this
                    // acquisition already handed over (sequence numbers only grow).
                    let sequence = data.sequence_number();
                    if let (Some(seq), Some(last)) = (sequence, delivered) {
                        if seq <= last {
                            replayed += 1;
                            continue;
                        }
                    }
                    if sequence.is_some() {
                        delivered = sequence;
                    }
                    if shared.failures.load(Ordering::Relaxed) != 0 {
                        shared.failures.store(0, Ordering::Relaxed);
                    }
                    match from_received(&shared.hub, partition, &data) {
                        Ok(event) => Item::Event {
                            partition,
                            generation,
                            event,
                        },
                        Err(error) => Item::PartitionFailed(error),
                    }
                }
                Some(Err(e)) => {
                    let error = from_hubs(&format!("reading partition {partition}"), e);
                    // Conflict = another member took the partition (epoch steal or revocation);
                    // a retriable failure: the processor hands the partition out again.
                    if !shared.is_current(partition, generation) {
                        // Ended meanwhile (taken over, or the member is reconnecting and closed
                        // this client): not the application's concern.
                        debug!(error = %error, partition, generation, "ended partition's receiver failed");
                    } else if crate::poison::is_undecodable(&error) {
                        undecodable = Some(error);
                    } else if error.kind() != ErrorKind::Conflict && !error.is_retriable() {
                        let _ = tx.send(Item::PartitionFailed(error)).await;
                    } else {
                        if error.kind() != ErrorKind::Conflict {
                            shared.failures.fetch_add(1, Ordering::Relaxed);
                        }
                        debug!(error = %error, partition, generation, group = %shared.group, "partition released");
                    }
                    break;
                }
                None => {
                    debug!(partition, generation, "partition stream ended");
                    break;
                }
            };
            // Taken over (the store wrapper saw another owner): stop, so the processor can
            // hand the partition out again should this member win it back.
            if !shared.is_current(partition, generation) {
                debug!(partition, generation, "partition taken over; pump stops");
                break;
            }
            let sent = match &item {
                Item::Event { event, .. } => Some(event.offset),
                _ => None,
            };
            if tx.send(item).await.is_err() {
                break;
            }
            if let Some(sequence) = sent {
                progress.delivered.store(sequence, Ordering::Relaxed);
            }
        }
        if replayed > 0 {
            debug!(
                partition,
                generation, replayed, "skipped events the receiver delivered again"
            );
        }
        if let Some(cause) = undecodable {
            // Skip the event only once the application has every event before it: the next
            // acquisition starts after it, so an event still buffered here would be lost.
            let last = delivered.unwrap_or(-1);
            let limit = Instant::now() + DRAIN_LIMIT;
            let drained = loop {
                if progress.handed.load(Ordering::Relaxed) >= last {
                    break true;
                }
                if Instant::now() >= limit || !shared.is_current(partition, generation) {
                    break false;
                }
                tokio::select! {
                    _ = stop.changed() => break false,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            };
            let sequence = if drained {
                delivered
                    .or_else(|| shared.store.listed_checkpoint(partition))
                    .map(|last| last + 1)
            } else {
                None
            };
            skip_undecodable(&shared, partition, sequence, cause, &tx).await;
        }
    }
    if let Ok(mut reading) = shared.reading.lock() {
        if reading
            .get(&partition)
            .is_some_and(|a| a.generation == generation)
        {
            reading.remove(&partition);
        }
    }
    // Closing removes the client from the processor's map, so it can hand the partition out
    // again if this member still owns it.
    match Arc::try_unwrap(client) {
        Ok(client) => match tokio::time::timeout(CLIENT_CLOSE_TIMEOUT, client.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, partition, "closing partition client"),
            Err(_) => debug!(partition, "closing partition client timed out"),
        },
        Err(_) => debug!(
            partition,
            generation, "partition client still shared; not closed"
        ),
    }
    debug!(partition, generation, "pump ended");
}

/// The event `sequence` does not decode, and the connection broke on it: the next acquisition
/// starts after it (the store wrapper makes the processor resume there), and `recv` reports
/// one error for it.
async fn skip_undecodable(
    shared: &Shared,
    partition: PartitionId,
    sequence: Option<i64>,
    cause: Error,
    tx: &mpsc::Sender<Item>,
) {
    let report = match sequence {
        Some(sequence) => {
            shared.store.skip_through(partition, sequence);
            let report = crate::poison::skipped(&shared.hub, partition, sequence, &cause);
            tracing::warn!(error = %report, "skipping an undecodable event");
            report
        }
        // Where it sits is unknown (nothing delivered and no checkpoint), or the application
        // has not taken the events before it yet: report it; the partition is read again
        // from the checkpoint and meets the event again.
        None => cause,
    };
    // The connection broke on the event; the supervisor replaces it if the SDK cannot.
    shared.failures.fetch_add(1, Ordering::Relaxed);
    let _ = tx.send(Item::PartitionFailed(report)).await;
}
