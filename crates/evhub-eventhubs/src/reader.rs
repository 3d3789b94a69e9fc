//! Partition reader: one partition from a start position, outside any load balancing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_messaging_eventhubs::{
    ConsumerClient, EventReceiver, OpenReceiverOptions, StartLocation,
};
use evhub_core::telemetry::receive_span;
use evhub_core::{Error, PartitionId, PartitionReader, ReceivedEvent, Result, StartPosition};
use futures::StreamExt;
use tokio::sync::{mpsc, watch, Mutex};

use crate::connector::Connector;
use crate::convert::from_received;
use crate::error::from_hubs;

/// Events buffered between the SDK receiver and `recv`.
const BUFFER: usize = 512;

/// SDK start position for an evhub start position.
pub(crate) fn sdk_start(start: &StartPosition) -> azure_messaging_eventhubs::StartPosition {
    let (location, inclusive) = match start {
        StartPosition::Earliest => (StartLocation::Earliest, false),
        StartPosition::Latest => (StartLocation::Latest, false),
        StartPosition::Offset(seq) => (StartLocation::SequenceNumber(*seq), true),
        StartPosition::After(seq) => (StartLocation::SequenceNumber(*seq), false),
        StartPosition::Time(t) => (StartLocation::EnqueuedTime(*t), true),
    };
    azure_messaging_eventhubs::StartPosition {
        location,
        inclusive,
    }
}

/// Reads one partition through its own AMQP connection.
pub struct EventHubsReader {
    hub: Arc<str>,
    partition: PartitionId,
    events: Mutex<mpsc::Receiver<Result<ReceivedEvent>>>,
    stop: watch::Sender<bool>,
    closed: AtomicBool,
    /// An error met while filling a batch, reported by the next call.
    kept_error: std::sync::Mutex<Option<Error>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for EventHubsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubsReader")
            .field("hub", &self.hub)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl EventHubsReader {
    pub(crate) async fn open(
        connector: &Connector,
        hub: &str,
        group: &str,
        partition: PartitionId,
        start: &StartPosition,
    ) -> Result<Self> {
        evhub_core::group::validate_hub_name(hub)?;
        let client = connector.consumer(hub, group).await?;
        // Fails early with NotFound for a missing hub or partition.
        let probe = async {
            client
                .get_partition_properties(&partition.to_string())
                .await
                .map_err(|e| from_hubs(&format!("hub `{hub}` partition {partition}"), e))
        };
        if let Err(e) = connector.timed("reading partition properties", probe).await {
            let _ = client.close().await;
            return Err(e);
        }
        let options = OpenReceiverOptions {
            start_position: Some(sdk_start(start)),
            prefetch: Some(300),
            ..Default::default()
        };
        let receiver = match client
            .open_receiver_on_partition(partition.to_string(), Some(options))
            .await
        {
            Ok(receiver) => receiver,
            Err(e) => {
                let _ = client.close().await;
                return Err(from_hubs(
                    &format!("reading hub `{hub}` partition {partition}"),
                    e,
                ));
            }
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let (stop, stop_rx) = watch::channel(false);
        let hub: Arc<str> = Arc::from(hub);
        let source = Source {
            connector: connector.clone(),
            hub: hub.clone(),
            group: group.to_owned(),
            partition,
            start: start.clone(),
        };
        let task = tokio::spawn(pump(source, (client, receiver), tx, stop_rx));
        Ok(Self {
            hub,
            partition,
            events: Mutex::new(rx),
            stop,
            closed: AtomicBool::new(false),
            kept_error: std::sync::Mutex::new(None),
            task: std::sync::Mutex::new(Some(task)),
        })
    }
}

impl EventHubsReader {
    fn take_kept_error(&self) -> Option<Error> {
        self.kept_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Why the channel ended: closed by the application, or the receiver stopped.
    fn stopped(&self) -> Error {
        if self.closed.load(Ordering::Acquire) {
            return Error::closed("partition reader");
        }
        Error::new(
            evhub_core::ErrorKind::Unavailable,
            format!(
                "receiver of hub `{}` partition {} stopped",
                self.hub, self.partition
            ),
        )
    }
}

/// Where a reader's pump reads, and how it reopens after an undecodable event.
struct Source {
    connector: Connector,
    hub: Arc<str>,
    group: String,
    partition: PartitionId,
    start: StartPosition,
}

impl Source {
    async fn open(&self, start: &StartPosition) -> Result<(ConsumerClient, EventReceiver)> {
        let (hub, partition) = (&*self.hub, self.partition);
        let client = self.connector.consumer(hub, &self.group).await?;
        let options = OpenReceiverOptions {
            start_position: Some(sdk_start(start)),
            prefetch: Some(300),
            ..Default::default()
        };
        match client
            .open_receiver_on_partition(partition.to_string(), Some(options))
            .await
        {
            Ok(receiver) => Ok((client, receiver)),
            Err(e) => {
                let _ = client.close().await;
                Err(from_hubs(
                    &format!("reading hub `{hub}` partition {partition}"),
                    e,
                ))
            }
        }
    }

    /// Sequence number of the event that did not decode: the one after the last delivered, or
    /// the first one at the start position.
    async fn undecodable_sequence(&self, delivered: Option<i64>) -> Option<i64> {
        if let Some(last) = delivered {
            return Some(last + 1);
        }
        match self.start {
            StartPosition::Offset(n) => Some(n),
            StartPosition::After(n) => Some(n + 1),
            StartPosition::Earliest => {
                // The failed connection may be gone: ask on a fresh one.
                let client = self.connector.consumer(&self.hub, &self.group).await.ok()?;
                let id = self.partition.to_string();
                let read = client.get_partition_properties(&id);
                let first = match tokio::time::timeout(Duration::from_secs(10), read).await {
                    Ok(Ok(p)) if !p.is_empty => Some(p.beginning_sequence_number),
                    _ => None,
                };
                let _ = tokio::time::timeout(Duration::from_secs(3), client.close()).await;
                first
            }
            StartPosition::Latest | StartPosition::Time(_) => None,
        }
    }
}

/// How one receiver's stream ended.
enum Ended {
    /// Stopped by `close`, or the application went away.
    Done,
    /// An undecodable event after `delivered`.
    Undecodable(Error),
}

async fn pump(
    source: Source,
    first: (ConsumerClient, EventReceiver),
    tx: mpsc::Sender<Result<ReceivedEvent>>,
    mut stop: watch::Receiver<bool>,
) {
    let (hub, partition) = (source.hub.clone(), source.partition);
    let mut delivered: Option<i64> = None;
    let mut current = Some(first);
    loop {
        let (client, receiver) = match current.take() {
            Some(opened) => opened,
            None => {
                let start = match delivered {
                    Some(last) => StartPosition::After(last),
                    None => source.start.clone(),
                };
                match source.open(&start).await {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        };
        let ended = {
            let mut stream = std::pin::pin!(receiver.stream_events());
            loop {
                let item = tokio::select! {
                    _ = stop.changed() => break Ended::Done,
                    item = stream.next() => item,
                };
                let converted = match item {
                    Some(Ok(data)) => {
                        // The SDK's receiver re-delivers from its opening position after a
                        // dropped connection: skip what was already handed over.
                        let sequence = data.sequence_number();
                        if let (Some(seq), Some(last)) = (sequence, delivered) {
                            if seq <= last {
                                continue;
                            }
                        }
                        if sequence.is_some() {
                            delivered = sequence;
                        }
                        from_received(&hub, partition, &data)
                    }
                    Some(Err(e)) => {
                        let error =
                            from_hubs(&format!("reading hub `{hub}` partition {partition}"), e);
                        if crate::poison::is_undecodable(&error) {
                            break Ended::Undecodable(error);
                        }
                        Err(error)
                    }
                    None => break Ended::Done,
                };
                let failed = converted.is_err();
                if tx.send(converted).await.is_err() || failed {
                    break Ended::Done;
                }
            }
        };
        let skip = match &ended {
            Ended::Undecodable(_) => source.undecodable_sequence(delivered).await,
            Ended::Done => None,
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), receiver.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), client.close()).await;
        match (ended, skip) {
            (Ended::Done, _) => return,
            (Ended::Undecodable(cause), Some(sequence)) => {
                let report = crate::poison::skipped(&hub, partition, sequence, &cause);
                tracing::warn!(error = %report, "skipping an undecodable event");
                if tx.send(Err(report)).await.is_err() {
                    return;
                }
                delivered = Some(sequence);
            }
            (Ended::Undecodable(cause), None) => {
                // Where the event sits is unknown (start at latest or a time): report and stop.
                let _ = tx.send(Err(cause)).await;
                return;
            }
        }
    }
}

#[async_trait]
impl PartitionReader for EventHubsReader {
    fn hub(&self) -> &str {
        &self.hub
    }

    fn partition(&self) -> PartitionId {
        self.partition
    }

    async fn recv(&self) -> Result<ReceivedEvent> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("partition reader"));
        }
        let mut events = self.events.lock().await;
        if let Some(error) = self.take_kept_error() {
            return Err(error);
        }
        match events.recv().await {
            Some(Ok(event)) => {
                let _span =
                    receive_span("eventhubs", &self.hub, None, event.partition, event.offset)
                        .entered();
                Ok(event)
            }
            Some(Err(e)) => Err(e),
            None => Err(self.stopped()),
        }
    }

    /// Hands over what the receiver already fetched: waits at most `wait` for the first event,
    /// then takes what is buffered without waiting. An error after some events is the next
    /// call's answer (the channel keeps it).
    async fn recv_batch(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        let Ok(mut events) = tokio::time::timeout_at(deadline, self.events.lock()).await else {
            return Ok(Vec::new());
        };
        if let Some(error) = self.take_kept_error() {
            return Err(error);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed("partition reader"));
        }
        let first = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(self.stopped()),
            Ok(Some(item)) => item?,
        };
        let _span =
            receive_span("eventhubs", &self.hub, None, first.partition, first.offset).entered();
        let mut batch = Vec::with_capacity(max.min(BUFFER));
        batch.push(first);
        while batch.len() < max {
            match events.try_recv() {
                Ok(Ok(event)) => batch.push(event),
                Ok(Err(error)) => {
                    if let Ok(mut kept) = self.kept_error.lock() {
                        *kept = Some(error);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }
}

impl Drop for EventHubsReader {
    fn drop(&mut self) {
        // The pump closes the link and the connection when it sees the stop signal.
        let _ = self.stop.send(true);
    }
}
