//! A lane worker: handles the events of one partition (or one key lane of it) in order, sends
//! their outputs, dead-letters what cannot be processed, and reports each event back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use evhub_core::telemetry::TraceContext;
use evhub_core::{Delivery, Error, ErrorKind, Event, Producer, ReceivedEvent};
use futures::future::join_all;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::builder::{Settings, Sink};
use crate::dead_letter::{to_dead_letter, Reason};
use crate::decision::{Decision, Output};
use crate::handler::Handler;
use crate::retry::Failures;
use crate::shutdown::ShutdownToken;
use crate::stats::{Counter, Stats};

/// What every worker of one pipeline shares.
pub(crate) struct Shared {
    pub handler: Arc<dyn Handler>,
    pub sinks: Vec<Sink>,
    pub dead_letter: Option<Arc<dyn Producer>>,
    pub settings: Settings,
    pub stats: Stats,
    /// Internal stop signal: the caller's shutdown or a fatal error.
    pub stop: ShutdownToken,
    pub group: String,
    pub concurrency: Option<Arc<Semaphore>>,
}

/// A source event handed to a lane, tagged with its partition's epoch at dispatch time.
#[derive(Debug)]
pub(crate) struct WorkItem {
    pub event: ReceivedEvent,
    pub epoch: u64,
    pub bytes: usize,
}

/// How a source event ended, reported to the coordinator in event order.
#[derive(Debug)]
pub(crate) enum Done {
    /// Finished: the source checkpoint may pass it.
    Finished(WorkItem),
    /// Not finished (partition revoked, pipeline stopping): must not be committed.
    Abandoned(WorkItem),
    /// Cannot be processed and cannot be dead-lettered: the partition stops here.
    Failed(WorkItem, Error),
}

enum State {
    Send,
    Done,
    Skipped,
    DeadLetter(Reason),
    DeadLettered,
    Abandoned,
    Failed(Error),
}

struct Slot {
    item: WorkItem,
    failures: Option<Failures>,
    failed_in_round: u32,
    state: State,
}

/// A batch whose outputs are queued at the sinks and not yet acknowledged by all of them.
struct InFlight {
    epoch: u64,
    slots: Vec<Slot>,
    /// The outputs per sink, in event order: kept to send again after a failure.
    by_sink: Vec<(usize, Vec<(usize, Event)>)>,
    /// The acknowledgements, one per entry of `by_sink`.
    acks: BoxFuture<'static, Vec<evhub_core::Result<Vec<Delivery>>>>,
    /// A sink refused to queue part of the batch: start no new batch until it is resolved.
    refused: bool,
}

/// Runs a lane until its queue closes: handles batch after batch in event order and keeps up to
/// `batches_in_flight` of them queued at the sinks; finishes them strictly in order.
pub(crate) async fn run_lane(
    shared: Arc<Shared>,
    epoch: Arc<AtomicU64>,
    mut queue: mpsc::UnboundedReceiver<Vec<WorkItem>>,
    done: mpsc::UnboundedSender<Vec<Done>>,
) {
    // After an event failed for good, the rest of its epoch is abandoned without processing.
    let mut failed_epoch = None;
    let mut window: VecDeque<InFlight> = VecDeque::new();
    let depth = shared.settings.batches_in_flight.max(1);
    let batch_size = shared.settings.batch_size.max(1);
    // Received and not yet started, in event order.
    let mut backlog: VecDeque<WorkItem> = VecDeque::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut open = true;
    loop {
        while backlog.len() < batch_size {
            match queue.try_recv() {
                Ok(items) => backlog.extend(items),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if window.is_empty() && backlog.is_empty() {
            // Idle: let another partition work (`partition_concurrency`).
            permit = None;
            if !open {
                break;
            }
        }
        let can_start = window.len() < depth && !window.iter().any(|b| b.refused);
        let report = if can_start && !backlog.is_empty() {
            let take = backlog.len().min(batch_size);
            let current = epoch.load(Ordering::Acquire);
            let (live, stale): (Vec<_>, Vec<_>) = backlog
                .drain(..take)
                .partition(|i| i.epoch == current && failed_epoch != Some(i.epoch));
            if !live.is_empty() {
                if permit.is_none() {
                    if let Some(limit) = &shared.concurrency {
                        permit = limit.clone().acquire_owned().await.ok();
                    }
                }
                window.push_back(start(&shared, &epoch, current, live).await);
            }
            stale.into_iter().map(Done::Abandoned).collect()
        } else {
            tokio::select! {
                biased;
                acks = front_acks(&mut window), if !window.is_empty() => {
                    match window.pop_front() {
                        Some(batch) => {
                            finish(&shared, batch, acks, &mut window, &mut failed_epoch).await
                        }
                        None => Vec::new(),
                    }
                }
                items = queue.recv(), if open && can_start => {
                    match items {
                        Some(items) => backlog.extend(items),
                        None => open = false,
                    }
                    continue;
                }
            }
        };
        if !report.is_empty() && done.send(report).is_err() {
            break;
        }
    }
}

/// The acknowledgements of the oldest batch in flight.
async fn front_acks(window: &mut VecDeque<InFlight>) -> Vec<evhub_core::Result<Vec<Delivery>>> {
    match window.front_mut() {
        Some(batch) => batch.acks.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Handles a batch and queues its outputs at the sinks.
async fn start(shared: &Shared, epoch: &AtomicU64, at: u64, items: Vec<WorkItem>) -> InFlight {
    let mut slots: Vec<Slot> = items
        .into_iter()
        .map(|item| Slot {
            item,
            failures: None,
            failed_in_round: 0,
            state: State::Send,
        })
        .collect();
    let mut pending: Vec<(usize, usize, Event)> = Vec::new();
    handle_all(shared, epoch, &mut slots, &mut pending).await;
    let by_sink = by_sink(pending);
    let queued = join_all(by_sink.iter().map(|(sink, items)| {
        let producer = &shared.sinks[*sink].producer;
        producer.enqueue_batch(items.iter().map(|(_, e)| e.clone()).collect())
    }))
    .await;
    let refused = queued.iter().any(|q| q.is_err());
    let acks = join_all(queued.into_iter().map(|queued| async move {
        match queued {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        }
    }));
    InFlight {
        epoch: at,
        slots,
        by_sink,
        acks: Box::pin(acks),
        refused,
    }
}

/// Finishes the oldest batch: on success its dead letters and its report. After a sink failure
/// the batches queued behind it are awaited and everything from the failed batch on is sent
/// again, in order (retried with backoff, narrowed down, dead-lettered by the policy).
async fn finish(
    shared: &Shared,
    mut batch: InFlight,
    acks: Vec<evhub_core::Result<Vec<Delivery>>>,
    window: &mut VecDeque<InFlight>,
    failed_epoch: &mut Option<u64>,
) -> Vec<Done> {
    if failed_epoch.is_some_and(|e| e == batch.epoch) {
        return batch
            .slots
            .into_iter()
            .map(|s| Done::Abandoned(s.item))
            .collect();
    }
    if acks.iter().all(|a| a.is_ok()) {
        let produced: usize = batch.by_sink.iter().map(|(_, items)| items.len()).sum();
        shared.stats.add(Counter::Produced, produced as u64);
        return conclude(shared, batch.slots, failed_epoch).await;
    }
    // The first attempt of the failed batch counts as its first round.
    let first = join_all(
        std::mem::take(&mut batch.by_sink)
            .into_iter()
            .zip(acks)
            .map(|((sink, items), result)| settle(shared, sink, items, result)),
    )
    .await;
    let mut later = Vec::with_capacity(window.len());
    for mut queued in window.drain(..) {
        // Their outcome does not matter: they are sent again after the failed batch.
        let _ = queued.acks.as_mut().await;
        later.push(queued);
    }
    send_outputs(shared, &mut batch.slots, Vec::new(), Some(first)).await;
    let mut report = conclude(shared, batch.slots, failed_epoch).await;
    for mut queued in later {
        if failed_epoch.is_some_and(|e| e == queued.epoch) {
            report.extend(queued.slots.into_iter().map(|s| Done::Abandoned(s.item)));
            continue;
        }
        let pending = queued
            .by_sink
            .into_iter()
            .flat_map(|(sink, items)| items.into_iter().map(move |(slot, e)| (slot, sink, e)))
            .collect();
        send_outputs(shared, &mut queued.slots, pending, None).await;
        report.extend(conclude(shared, queued.slots, failed_epoch).await);
    }
    report
}

/// Dead letters of a sent batch, counters, and how each event ended.
async fn conclude(
    shared: &Shared,
    mut slots: Vec<Slot>,
    failed_epoch: &mut Option<u64>,
) -> Vec<Done> {
    dead_letter_all(shared, &mut slots).await;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        out.push(match slot.state {
            State::Send | State::Done => {
                shared.stats.add(Counter::Handled, 1);
                Done::Finished(slot.item)
            }
            State::Skipped => {
                shared.stats.add(Counter::Skipped, 1);
                Done::Finished(slot.item)
            }
            State::DeadLettered => {
                shared.stats.add(Counter::DeadLettered, 1);
                Done::Finished(slot.item)
            }
            State::Failed(error) => {
                *failed_epoch = Some(slot.item.epoch);
                Done::Failed(slot.item, error)
            }
            // DeadLetter is resolved by dead_letter_all; kept here only if it was interrupted.
            State::Abandoned | State::DeadLetter(_) => Done::Abandoned(slot.item),
        });
    }
    out
}

/// Outputs grouped by sink, each group in event order.
fn by_sink(pending: Vec<(usize, usize, Event)>) -> Vec<(usize, Vec<(usize, Event)>)> {
    let mut by_sink: BTreeMap<usize, Vec<(usize, Event)>> = BTreeMap::new();
    for (slot, sink, event) in pending {
        by_sink.entry(sink).or_default().push((slot, event));
    }
    by_sink.into_iter().collect()
}

/// Phase 1: the handler, in event order, with retries of retriable errors.
async fn handle_all(
    shared: &Shared,
    epoch: &AtomicU64,
    slots: &mut [Slot],
    pending: &mut Vec<(usize, usize, Event)>,
) {
    let policy = &shared.settings.retry;
    let mut interrupted = false;
    for (idx, slot) in slots.iter_mut().enumerate() {
        if interrupted || epoch.load(Ordering::Acquire) != slot.item.epoch {
            slot.state = State::Abandoned;
            continue;
        }
        loop {
            let event = &slot.item.event;
            slot.state = match shared.handler.handle(event).await {
                Ok(Decision::Done) => State::Done,
                Ok(Decision::Skip) => State::Skipped,
                Ok(Decision::DeadLetter(message)) => State::DeadLetter(Reason::rejected(message)),
                Ok(Decision::Emit(outputs)) => match route(shared, event, outputs) {
                    Ok(routed) if routed.is_empty() => State::Done,
                    Ok(routed) => {
                        pending.extend(routed.into_iter().map(|(sink, e)| (idx, sink, e)));
                        State::Send
                    }
                    Err(e) => {
                        let now = SystemTime::now();
                        State::DeadLetter(Reason::failed(&e, 1, now, now))
                    }
                },
                Err(error) => {
                    let f = Failures::record(&mut slot.failures, error);
                    if f.may_retry(policy) {
                        shared.stats.add(Counter::Retried, 1);
                        let wait = policy.backoff(f.attempts);
                        tracing::warn!(
                            hub = %event.hub, partition = event.partition, offset = event.offset,
                            attempt = f.attempts, retry_in_ms = wait.as_millis() as u64,
                            "pipeline: handler failed, retrying: {}", f.last_error
                        );
                        if sleep_or_stop(&shared.stop, wait).await {
                            continue;
                        }
                        interrupted = true;
                        State::Abandoned
                    } else {
                        State::DeadLetter(reason_of(f))
                    }
                }
            };
            break;
        }
    }
}

/// Outputs of a decision with their sinks; the source's trace context continues in them.
fn route(
    shared: &Shared,
    source: &ReceivedEvent,
    outputs: Vec<Output>,
) -> evhub_core::Result<Vec<(usize, Event)>> {
    let trace = shared
        .settings
        .propagate_trace
        .then(|| TraceContext::extract(&source.headers))
        .flatten();
    let mut routed = Vec::with_capacity(outputs.len() * shared.sinks.len().max(1));
    for output in outputs {
        let mut event = output.event;
        if let Some(ctx) = trace {
            let own = TraceContext::extract(&event.headers);
            if own.is_none() || own == Some(ctx) {
                ctx.child().inject(&mut event.headers);
            }
        }
        match output.sink {
            None => {
                // Every sink gets the event: clones for all but the last, which takes it.
                for sink in 1..shared.sinks.len() {
                    routed.push((sink, event.clone()));
                }
                if !shared.sinks.is_empty() {
                    routed.push((0, event));
                }
            }
            Some(name) => {
                let sink = shared
                    .sinks
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| {
                        Error::invalid_input(format!(
                            "the handler sent an event to unknown sink `{name}`"
                        ))
                    })?;
                routed.push((sink, event));
            }
        }
    }
    Ok(routed)
}

/// Phase 2 after a failure: outputs to their sinks, one `send_batch` per sink and round;
/// retriable failures are retried with backoff, a non-retriable batch failure is narrowed down
/// event by event. `first` is the outcome of a first round that already happened.
async fn send_outputs(
    shared: &Shared,
    slots: &mut [Slot],
    mut pending: Vec<(usize, usize, Event)>,
    mut first: Option<Vec<SinkRound>>,
) {
    let policy = &shared.settings.retry;
    let mut round = 0u32;
    loop {
        round += 1;
        let rounds = match first.take() {
            Some(rounds) => rounds,
            None => {
                pending.retain(|(i, _, _)| matches!(slots[*i].state, State::Send));
                if pending.is_empty() {
                    return;
                }
                join_all(by_sink(std::mem::take(&mut pending)).into_iter().map(
                    |(sink, items)| async move {
                        let producer = &shared.sinks[sink].producer;
                        let events: Vec<Event> = items.iter().map(|(_, e)| e.clone()).collect();
                        let result = producer.send_batch(events).await;
                        settle(shared, sink, items, result).await
                    },
                ))
                .await
            }
        };
        let mut retry_later = Vec::new();
        for (sink, ok, failed) in rounds {
            shared.stats.add(Counter::Produced, ok.len() as u64);
            for (slot_idx, event, error) in failed {
                let slot = &mut slots[slot_idx];
                if slot.failed_in_round != round {
                    slot.failed_in_round = round;
                    let f = Failures::record(&mut slot.failures, error);
                    tracing::warn!(
                        sink = %shared.sinks[sink].name, hub = %slot.item.event.hub,
                        partition = slot.item.event.partition, offset = slot.item.event.offset,
                        attempt = f.attempts, "pipeline: sink send failed: {}", f.last_error
                    );
                    if is_sink_fault(&f.last_error) {
                        slot.state = State::Failed(sink_fault(
                            &shared.sinks[sink],
                            &slot.item.event,
                            &f.last_error,
                        ));
                    } else if !f.may_retry(policy) {
                        slot.state = State::DeadLetter(reason_of(f));
                    }
                }
                retry_later.push((slot_idx, sink, event));
            }
        }
        retry_later.retain(|(i, _, _)| matches!(slots[*i].state, State::Send));
        if retry_later.is_empty() {
            return;
        }
        let mut waiting: Vec<usize> = retry_later.iter().map(|(i, _, _)| *i).collect();
        waiting.sort_unstable();
        waiting.dedup();
        shared.stats.add(Counter::Retried, waiting.len() as u64);
        let attempts = waiting
            .iter()
            .filter_map(|&i| slots[i].failures.as_ref().map(|f| f.attempts))
            .max()
            .unwrap_or(1);
        if !sleep_or_stop(&shared.stop, policy.backoff(attempts)).await {
            for i in waiting {
                slots[i].state = State::Abandoned;
            }
            return;
        }
        pending = retry_later;
    }
}

/// One sink's share of a round: what was stored, what failed and why.
type SinkRound = (usize, Vec<(usize, Event)>, Vec<(usize, Event, Error)>);

/// Sorts the outcome of one sink's batch: on a non-retriable error that is not about the sink,
/// the events are sent one by one to find the refused ones.
async fn settle(
    shared: &Shared,
    sink: usize,
    items: Vec<(usize, Event)>,
    result: evhub_core::Result<Vec<Delivery>>,
) -> SinkRound {
    match result {
        Ok(_) => (sink, items, Vec::new()),
        Err(e) if e.is_retriable() || is_sink_fault(&e) => {
            let failed = items
                .into_iter()
                .map(|(slot, event)| (slot, event, copy_error(&e)))
                .collect();
            (sink, Vec::new(), failed)
        }
        Err(_) => {
            // Which event was refused? Send them one by one.
            let producer = &shared.sinks[sink].producer;
            let singles = join_all(items.into_iter().map(|(slot, event)| async move {
                let result = producer.send(event.clone()).await;
                (slot, event, result)
            }))
            .await;
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for (slot, event, result) in singles {
                match result {
                    Ok(_) => ok.push((slot, event)),
                    Err(e) => failed.push((slot, event, e)),
                }
            }
            (sink, ok, failed)
        }
    }
}

/// Phase 3: what must go to the dead-letter hub, in event order.
async fn dead_letter_all(shared: &Shared, slots: &mut [Slot]) {
    let mut stopped = false;
    for slot in slots.iter_mut() {
        let State::DeadLetter(reason) = &slot.state else {
            continue;
        };
        if stopped {
            slot.state = State::Abandoned;
            continue;
        }
        let event = &slot.item.event;
        let Some(dlq) = &shared.dead_letter else {
            slot.state = State::Failed(stop_error(
                event,
                reason,
                "no dead-letter hub is configured, so the pipeline stops on this partition \
                 instead of skipping the event",
            ));
            stopped = true;
            continue;
        };
        tracing::warn!(
            hub = %event.hub, partition = event.partition, offset = event.offset,
            reason = reason.reason.as_str(), attempts = reason.attempts,
            dead_letter_hub = dlq.hub(), "pipeline: event dead-lettered: {}: {}",
            reason.kind, crate::dead_letter::redact(&reason.message)
        );
        let letter = to_dead_letter(event, &shared.group, reason);
        let mut failures = None;
        slot.state = loop {
            match dlq.send(letter.clone()).await {
                Ok(_) => break State::DeadLettered,
                Err(error) => {
                    let f = Failures::record(&mut failures, error);
                    if f.may_retry(&shared.settings.retry) {
                        shared.stats.add(Counter::Retried, 1);
                        let wait = shared.settings.retry.backoff(f.attempts);
                        if sleep_or_stop(&shared.stop, wait).await {
                            continue;
                        }
                        stopped = true;
                        break State::Abandoned;
                    }
                    stopped = true;
                    let why = format!(
                        "writing it to the dead-letter hub `{}` failed: {}",
                        dlq.hub(),
                        f.last_error
                    );
                    break State::Failed(stop_error(event, reason, &why));
                }
            }
        };
    }
}

/// The error that stops a partition: which event, why it failed, and why it was not skipped.
fn stop_error(event: &ReceivedEvent, reason: &Reason, why: &str) -> Error {
    let kind = match reason.reason {
        crate::dead_letter::DeadLetterReason::Rejected => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    Error::new(
        kind,
        format!(
            "pipeline stopped on partition {} of hub `{}`: the event at offset {} failed \
             ({}, {} attempt(s)): {}: {}; {why}; the checkpoint stays before this event",
            event.partition,
            event.hub,
            event.offset,
            reason.reason.as_str(),
            reason.attempts,
            reason.kind,
            crate::dead_letter::redact(&reason.message),
        ),
    )
}

/// A sink error that is about the sink, not the event (missing hub, credentials, closed
/// producer, configuration): dead-lettering every event for it would empty the source into the
/// dead-letter hub, so the pipeline stops instead.
fn is_sink_fault(e: &Error) -> bool {
    !e.is_retriable()
        && matches!(
            e.kind(),
            ErrorKind::Auth
                | ErrorKind::NotFound
                | ErrorKind::Closed
                | ErrorKind::Config
                | ErrorKind::Unsupported
        )
}

fn sink_fault(sink: &Sink, event: &ReceivedEvent, e: &Error) -> Error {
    let kind = if e.kind() == ErrorKind::Config {
        ErrorKind::Other
    } else {
        e.kind()
    };
    Error::new(
        kind,
        format!(
            "pipeline stopped on partition {} of hub `{}` at offset {}: sink `{}` (hub `{}`) failed: \
             {e}; this is a problem of the sink, not of the event, so it is not dead-lettered; \
             the checkpoint stays before this event",
            event.partition,
            event.hub,
            event.offset,
            sink.name,
            sink.producer.hub()
        ),
    )
}

fn reason_of(f: &Failures) -> Reason {
    Reason::failed(&f.last_error, f.attempts, f.first_at, f.last_at)
}

/// The same error for another event of a failed batch (errors are not `Clone`).
fn copy_error(e: &Error) -> Error {
    Error::new(e.kind(), e.message()).with_retriable(e.is_retriable())
}

/// Sleeps `wait`; false when the pipeline was told to stop first.
async fn sleep_or_stop(stop: &ShutdownToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.wait() => false,
    }
}
