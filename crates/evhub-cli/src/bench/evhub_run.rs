//! The benchmark workload through the evhub API (any backend).

use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::{Backend, ConsumerOptions, Event, HubOptions, InitialPosition, Producer};
use tokio::task::JoinSet;

use super::stats::{decode, now_micros, payload, share, Clock, Latencies, Phase, RunResult};
use super::{join_tasks, pacing, within, Workload};
use crate::progress;

/// Produces, consumes, mirrors and measures latency on a fresh hub `hub`.
pub async fn run(
    backend: &Arc<dyn Backend>,
    w: &Workload,
    hub: &str,
    group: &str,
) -> evhub::Result<RunResult> {
    if backend.capabilities().create_hub {
        backend
            .create_hub(hub, HubOptions::with_partitions(w.partitions))
            .await?;
    }
    let mut producers: Vec<Arc<dyn Producer>> = Vec::with_capacity(w.producers as usize);
    for _ in 0..w.producers {
        producers.push(backend.producer(hub).await.map_err(|e| {
            if e.kind() == evhub::ErrorKind::NotFound && !backend.capabilities().create_hub {
                evhub::Error::not_found(format!(
                    "{}; backend `{}` cannot create hubs: the benchmark needs a service that creates them on first use (evhub-emulator --auto-create-hubs)",
                    e.message(),
                    backend.id()
                ))
            } else {
                e
            }
        })?);
    }

    // Produce phase.
    let bar = progress::bar(w.events, "evhub produce");
    let clock = Clock::start();
    let mut tasks = JoinSet::new();
    for (i, producer) in producers.iter().cloned().enumerate() {
        let (from, to) = share(w.events, w.producers, i as u32);
        let (size, batch, bar) = (w.size, w.batch, bar.clone());
        tasks.spawn(async move {
            let mut seq = from;
            while seq < to {
                let end = (seq + batch).min(to);
                let events: Vec<Event> = (seq..end).map(|s| Event::new(payload(size, s))).collect();
                producer.send_batch(events).await?;
                bar.inc(end - seq);
                seq = end;
            }
            Ok(())
        });
    }
    within(w.phase_timeout, "produce phase", join_tasks(tasks)).await?;
    let produce = clock.phase(w.events, w.events * w.size as u64);
    bar.finish_and_clear();

    // Consume phase: the backlog, through one group member; the join is timed separately.
    let bar = progress::bar(w.events, "evhub consume");
    let joining = Instant::now();
    let consumer = backend
        .consumer(
            hub,
            ConsumerOptions::new(group).with_initial_position(InitialPosition::Earliest),
        )
        .await?;
    let first = within(w.phase_timeout, "first event", consumer.recv()).await?;
    let join_seconds = joining.elapsed().as_secs_f64();
    let clock = Clock::start();
    let consume_rest = async {
        let mut bytes = 0u64;
        for _ in 1..w.events {
            let event = consumer.recv().await?;
            std::hint::black_box(decode(&event.payload));
            bytes += event.payload.len() as u64;
            bar.inc(1);
        }
        Ok(bytes)
    };
    let bytes = within(w.phase_timeout, "consume phase", consume_rest).await?;
    let consume = clock.phase(w.events - 1, bytes);
    std::hint::black_box(first);
    bar.finish_and_clear();

    // Mirror phase, while the hub holds exactly the produced events: on backends with consumer
    // groups of our own the member above stays joined (idle at the end of the backlog) for the
    // latency phase. Where every reader shares `$Default` (Event Hubs) the mirror must not run
    // beside that member, nor commit before the `recv_batch` reader starts from the beginning:
    // it runs last there.
    let creates_hubs = backend.capabilities().create_hub;
    let mut mirror = None;
    if w.mirror && creates_hubs {
        let group = format!("{group}-mirror");
        mirror = Some(super::mirror::evhub(backend, w, hub, &group, w.events).await?);
    }

    // Latency phase: paced sends while the member reads.
    let mut latencies = Latencies::default();
    if w.latency_events > 0 {
        let sender = tokio::spawn(paced_send(producers[0].clone(), w.clone()));
        let receive = async {
            let mut lat = Vec::with_capacity(w.latency_events as usize);
            while (lat.len() as u64) < w.latency_events {
                let event = consumer.recv().await?;
                if let Some((ts, seq)) = decode(&event.payload) {
                    if seq >= w.events {
                        lat.push(now_micros().saturating_sub(ts));
                    }
                }
            }
            Ok(lat)
        };
        latencies.0 = within(w.phase_timeout, "latency phase", receive).await?;
        super::join_one(sender).await?;
    }
    consumer.close().await?;
    for producer in &producers {
        producer.close().await?;
    }
    // The backlog again, through a second member (nothing was committed) reading with
    // `recv_batch`.
    let batch_group = if creates_hubs {
        format!("{group}-batch")
    } else {
        group.to_owned()
    };
    let consume_batch = consume_batch(backend, w, hub, &batch_group).await?;
    if w.mirror && !creates_hubs {
        // The hub holds the latency phase's events too.
        let events = w.events + w.latency_events;
        mirror = Some(super::mirror::evhub(backend, w, hub, group, events).await?);
    }
    Ok(RunResult {
        produce,
        consume,
        join_seconds,
        latencies,
        consume_owned: None,
        consume_batch: Some(consume_batch),
        mirror,
    })
}

/// Reads the first `w.events` events of `hub` with `recv_batch`; timed from the first batch.
async fn consume_batch(
    backend: &Arc<dyn Backend>,
    w: &Workload,
    hub: &str,
    group: &str,
) -> evhub::Result<Phase> {
    let bar = progress::bar(w.events, "evhub consume (recv_batch)");
    let consumer = backend
        .consumer(
            hub,
            ConsumerOptions::new(group).with_initial_position(InitialPosition::Earliest),
        )
        .await?;
    let wait = Duration::from_secs(1);
    let first = within(w.phase_timeout, "first batch", async {
        loop {
            let batch = consumer.recv_batch(w.recv_batch, wait).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    })
    .await?;
    let clock = Clock::start();
    let first_len = first.len() as u64;
    let mut read = first_len;
    drop(first);
    let consume_rest = async {
        let mut bytes = 0u64;
        while read < w.events {
            let batch = consumer.recv_batch(w.recv_batch, wait).await?;
            for event in &batch {
                std::hint::black_box(decode(&event.payload));
                bytes += event.payload.len() as u64;
            }
            read += batch.len() as u64;
            bar.inc(batch.len() as u64);
        }
        Ok(bytes)
    };
    let bytes = within(w.phase_timeout, "recv_batch consume phase", consume_rest).await?;
    // The first batch (it includes the group join) is not timed.
    let phase = clock.phase(read - first_len, bytes);
    bar.finish_and_clear();
    consumer.close().await?;
    Ok(phase)
}

async fn paced_send(producer: Arc<dyn Producer>, w: Workload) -> evhub::Result<()> {
    let (tick, per_tick) = pacing(w.latency_rate);
    let mut interval = tokio::time::interval(tick);
    let mut inflight = JoinSet::new();
    let (mut seq, end) = (w.events, w.events + w.latency_events);
    while seq < end {
        interval.tick().await;
        let next = (seq + per_tick).min(end);
        let events: Vec<Event> = (seq..next)
            .map(|s| Event::new(payload(w.size, s)))
            .collect();
        let producer = producer.clone();
        inflight.spawn(async move { producer.send_batch(events).await.map(|_| ()) });
        seq = next;
    }
    join_tasks(inflight).await
}
