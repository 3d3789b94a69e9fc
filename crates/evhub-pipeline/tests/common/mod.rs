//! Pipeline cases shared by every backend pair: a source harness and a sink harness
//! (`evhub_conformance::Harness`, the conformance suite's way to reach a server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evhub_conformance::Harness;
use evhub_core::telemetry::TraceContext;
use evhub_core::{
    Backend, Bytes, ConsumerOptions, Error, ErrorKind, Event, InitialPosition, ReceivedEvent,
};
use evhub_pipeline::dead_letter::{header_text, headers as dlq};
use evhub_pipeline::{
    handler_fn, Decision, Pipeline, PipelineBuilder, RetryPolicy, ShutdownToken, Stats,
    StatsSnapshot,
};
use rand::Rng;

/// A hub and group name no other run uses.
pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("pipe-{prefix}-{n:08x}")
}

pub async fn new_hub(h: &dyn Harness, prefix: &str, partitions: u32) -> String {
    let name = unique(prefix);
    h.create_hub(&name, partitions).await.expect("create hub");
    name
}

pub async fn group(h: &dyn Harness, hub: &str, prefix: &str) -> String {
    let g = unique(prefix);
    h.create_group(hub, &g).await.expect("create group");
    g
}

/// Source events: `n` events over 8 keys, each with a `seq` header, a binary header and every
/// other one a `traceparent`; sent one at a time so the source order per key is `seq` order.
pub async fn produce(backend: &Arc<dyn Backend>, hub: &str, payloads: &[String]) -> Vec<Event> {
    let producer = backend.producer(hub).await.expect("producer");
    let mut sent = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let mut event = Event::new(payload.clone())
            .with_key(format!("k{}", i % 8))
            .with_header("seq", i.to_string())
            .with_header("bin", Bytes::from(vec![0u8, 255, (i % 256) as u8]));
        if i % 2 == 0 {
            TraceContext::new_root().inject(&mut event.headers);
        }
        producer.send(event.clone()).await.expect("send");
        sent.push(event);
    }
    producer.flush().await.expect("flush");
    sent
}

/// Reads `hub` with a new group from the beginning until `want` events arrived, then for a
/// quiet period more (duplicates).
pub async fn read_all(h: &dyn Harness, hub: &str, want: usize) -> Vec<ReceivedEvent> {
    let backend = h.connect().await.expect("connect");
    let g = group(h, hub, "reader").await;
    let consumer = backend
        .consumer(
            hub,
            ConsumerOptions::new(g).with_initial_position(InitialPosition::Earliest),
        )
        .await
        .expect("reader consumer");
    let mut out = Vec::new();
    let deadline = Instant::now() + h.timeout();
    while out.len() < want && Instant::now() < deadline {
        out.extend(
            consumer
                .recv_batch(1000, Duration::from_millis(200))
                .await
                .expect("read"),
        );
    }
    let quiet = Instant::now() + h.quiet_period();
    while Instant::now() < quiet {
        out.extend(
            consumer
                .recv_batch(1000, Duration::from_millis(100))
                .await
                .expect("read"),
        );
    }
    let _ = consumer.close().await;
    assert!(
        out.len() >= want,
        "{hub}: read {} of {want} events within {:?}",
        out.len(),
        h.timeout()
    );
    out
}

/// What the next member of `group` receives first, if anything within the quiet period (after
/// a group join, which takes a while on Kafka).
pub async fn next_uncommitted(h: &dyn Harness, hub: &str, group: &str) -> Vec<ReceivedEvent> {
    let backend = h.connect().await.expect("connect");
    let consumer = backend
        .consumer(hub, ConsumerOptions::new(group))
        .await
        .expect("consumer");
    // Joining takes a while on some backends: wait for partitions before judging silence.
    let joined_by = Instant::now() + h.timeout();
    while consumer.assignment().await.map_or(true, |a| a.is_empty()) && Instant::now() < joined_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + h.quiet_period() * 3 + Duration::from_secs(2);
    while Instant::now() < deadline {
        out.extend(
            consumer
                .recv_batch(1000, Duration::from_millis(200))
                .await
                .expect("recv"),
        );
    }
    let _ = consumer.close().await;
    out
}

fn text(e: &ReceivedEvent) -> String {
    String::from_utf8_lossy(&e.payload).into_owned()
}

fn without_trace(headers: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
    headers
        .iter()
        .filter(|(k, _)| k != "traceparent")
        .cloned()
        .collect()
}

/// Waits until `done(snapshot)` or the harness timeout.
pub async fn wait_for(
    h: &dyn Harness,
    stats: &Stats,
    what: &str,
    done: impl Fn(&StatsSnapshot) -> bool,
) {
    let deadline = Instant::now() + h.timeout() * 2;
    loop {
        let s = stats.snapshot();
        if done(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

fn settled(s: &StatsSnapshot) -> u64 {
    s.handled + s.skipped + s.dead_lettered
}

/// Checks every event of `sent` arrived in `sink` at least once, in `seq` order per key, byte
/// exact (key, payload, headers; `traceparent` continues the source trace with a new span).
fn check_mirror(sent: &[Event], sink: &[ReceivedEvent]) -> usize {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_seq_per_key: HashMap<Bytes, i64> = HashMap::new();
    let by_payload: HashMap<Bytes, &Event> = sent.iter().map(|e| (e.payload.clone(), e)).collect();
    let mut sink_sorted: Vec<&ReceivedEvent> = sink.iter().collect();
    // Sink order within a partition is what counts; events of one key share a partition.
    sink_sorted.sort_by_key(|e| (e.partition, e.offset));
    for e in sink_sorted {
        let source = by_payload
            .get(&e.payload)
            .unwrap_or_else(|| panic!("unexpected sink event {:?}", text(e)));
        *seen.entry(text(e)).or_default() += 1;
        assert_eq!(e.key, source.key, "key byte-exact");
        assert_eq!(
            without_trace(&e.headers),
            without_trace(&source.headers),
            "headers byte-exact"
        );
        if let Some(ctx) = TraceContext::extract(&source.headers) {
            let out = TraceContext::extract(&e.headers).expect("traceparent carried");
            assert_eq!(out.trace_id(), ctx.trace_id(), "same trace");
            assert_ne!(out.span_id(), ctx.span_id(), "a child span");
        }
        let seq: i64 = header_text(&e.headers, "seq").unwrap().parse().unwrap();
        let key = e.key.clone().unwrap();
        if let Some(&prev) = last_seq_per_key.get(&key) {
            // A duplicate may repeat earlier events; first deliveries never go backwards.
            if seen[&text(e)] == 1 {
                assert!(seq > prev, "key order: seq {seq} after {prev}");
            }
        }
        if seen[&text(e)] == 1 {
            last_seq_per_key.insert(key, seq);
        }
    }
    for s in sent {
        let p = String::from_utf8_lossy(&s.payload).into_owned();
        assert!(seen.contains_key(&p), "event {p} lost");
    }
    seen.values().map(|n| n - 1).sum()
}

/// Mirror: every event forwarded at least once, byte-exact, per-key order, trace continued,
/// checkpoints committed (a new member of the group finds nothing left).
pub async fn mirror_keeps_every_event_in_order(src: &dyn Harness, dst: &dyn Harness) {
    let source = src.connect().await.expect("connect source");
    let sink = dst.connect().await.expect("connect sink");
    let in_hub = new_hub(src, "src", 4).await;
    let out_hub = new_hub(dst, "dst", 4).await;
    let g = group(src, &in_hub, "mirror").await;
    let payloads: Vec<String> = (0..200).map(|i| format!("event-{i}")).collect();
    let sent = produce(&source, &in_hub, &payloads).await;

    let pipeline = Pipeline::builder(source.clone(), &in_hub, &g)
        .sink("out", sink.producer(&out_hub).await.expect("sink producer"))
        .lag_interval(Duration::from_millis(200))
        .build()
        .expect("build");
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let run = tokio::spawn(pipeline.run(shutdown.clone()));
    wait_for(src, &stats, "every event handled", |s| s.handled >= 200).await;
    // Let a lag check see the end offsets.
    wait_for(src, &stats, "lag reported", |s| {
        s.partitions.iter().any(|p| p.end_offset.is_some())
    })
    .await;
    shutdown.shutdown();
    let summary = run.await.expect("join").expect("pipeline ends cleanly");
    assert_eq!(summary.in_flight, 0);
    assert!(summary.produced >= 200, "{summary:?}");
    assert!(summary.committed >= 1, "{summary:?}");
    assert_eq!(summary.dead_lettered, 0);

    let got = read_all(dst, &out_hub, 200).await;
    let duplicates = check_mirror(&sent, &got);
    assert_eq!(duplicates, 0, "no restart, no duplicates");
    let left = next_uncommitted(src, &in_hub, &g).await;
    assert!(left.is_empty(), "{} events left uncommitted", left.len());
}

#[derive(Default)]
struct Calls(Mutex<HashMap<String, usize>>);

impl Calls {
    fn bump(&self, key: &str) -> usize {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }
    fn get(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

/// The failure handler of the cases: `ok`, `flaky` (2 retriable failures), `poison` (always
/// retriable), `bad` (not retriable, message with a secret), `reject` (dead-letter decision).
fn failing_handler(
    calls: Arc<Calls>,
) -> evhub_pipeline::FnHandler<impl Fn(ReceivedEvent) -> futures_like::Ready + Send + Sync + 'static>
{
    handler_fn(move |event: ReceivedEvent| {
        let payload = text(&event);
        let n = calls.bump(&payload);
        let kind = payload.split('-').next().unwrap_or("").to_owned();
        futures_like::ready(match kind.as_str() {
            "flaky" if n <= 2 => Err(Error::new(ErrorKind::Unavailable, "database busy")),
            "poison" => Err(Error::new(
                ErrorKind::Timeout,
                "enrichment service timed out",
            )),
            "bad" => Err(Error::invalid_input(
                "cannot parse record; connect with password=hunter2 failed",
            )),
            "reject" => Ok(Decision::dead_letter("amount is negative")),
            _ => Ok(Decision::forward(event.to_event())),
        })
    })
}

/// `std::future::Ready` under a short name for the handler's return type.
pub mod futures_like {
    /// The handler future.
    pub type Ready = std::future::Ready<evhub_core::Result<evhub_pipeline::Decision>>;
    /// A ready handler result.
    pub fn ready(r: evhub_core::Result<evhub_pipeline::Decision>) -> Ready {
        std::future::ready(r)
    }
}

/// Retries are bounded; non-retriable, exhausted and rejected events land in the dead-letter
/// hub byte-exact with reason headers; the rest reach the sink; everything is committed.
pub async fn failures_retry_bounded_and_dead_letter(src: &dyn Harness, dst: &dyn Harness) {
    let source = src.connect().await.expect("connect source");
    let sink = dst.connect().await.expect("connect sink");
    let in_hub = new_hub(src, "src", 2).await;
    let out_hub = new_hub(dst, "dst", 2).await;
    let dlq_hub = new_hub(dst, "dlq", 1).await;
    let g = group(src, &in_hub, "failing").await;
    let kinds = [
        "ok", "flaky", "poison", "bad", "reject", "ok", "ok", "flaky",
    ];
    let payloads: Vec<String> = (0..40)
        .map(|i| format!("{}-{i}", kinds[i % kinds.len()]))
        .collect();
    let sent = produce(&source, &in_hub, &payloads).await;
    let calls = Arc::new(Calls::default());

    let pipeline = Pipeline::builder(source.clone(), &in_hub, &g)
        .handler(failing_handler(calls.clone()))
        .sink("out", sink.producer(&out_hub).await.expect("sink"))
        .dead_letter(sink.producer(&dlq_hub).await.expect("dlq"))
        .retry(fast_retry(3))
        .build()
        .expect("build");
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let run = tokio::spawn(pipeline.run(shutdown.clone()));
    wait_for(src, &stats, "all settled", |s| settled(s) >= 40).await;
    shutdown.shutdown();
    let summary = run.await.expect("join").expect("clean end");

    let count = |k: &str| {
        payloads
            .iter()
            .filter(|p| p.starts_with(&format!("{k}-")))
            .count() as u64
    };
    let rejected = count("poison") + count("bad") + count("reject");
    assert_eq!(summary.dead_lettered, rejected, "{summary:?}");
    assert_eq!(summary.handled, count("ok") + count("flaky"), "{summary:?}");
    // Bounded retries: flaky 2 retries each, poison max_attempts - 1 = 2 each.
    assert_eq!(
        summary.retried,
        2 * count("flaky") + 2 * count("poison"),
        "{summary:?}"
    );
    for p in &payloads {
        let expected = match p.split('-').next().unwrap() {
            "flaky" | "poison" => 3,
            _ => 1,
        };
        assert_eq!(calls.get(p), expected, "handler calls for {p}");
    }

    let letters = read_all(dst, &dlq_hub, rejected as usize).await;
    assert_eq!(
        letters.len() as u64,
        rejected,
        "exactly the rejected events"
    );
    let by_payload: HashMap<Bytes, &Event> = sent.iter().map(|e| (e.payload.clone(), e)).collect();
    for letter in &letters {
        let p = text(letter);
        let source_event = by_payload[&letter.payload];
        assert_eq!(letter.key, source_event.key, "{p}: key byte-exact");
        let n = source_event.headers.len();
        assert_eq!(
            &letter.headers[..n],
            &source_event.headers[..],
            "{p}: headers byte-exact, first"
        );
        let h = |name: &str| {
            header_text(&letter.headers, name).unwrap_or_else(|| panic!("{p}: header {name}"))
        };
        let (reason, kind, attempts) = match p.split('-').next().unwrap() {
            "poison" => ("retries-exhausted", "timeout", "3"),
            "bad" => ("non-retriable", "invalid input", "1"),
            "reject" => ("rejected", "rejected", "1"),
            other => panic!("{other} must not be dead-lettered"),
        };
        assert_eq!(h(dlq::REASON), reason, "{p}");
        assert_eq!(h(dlq::ERROR_KIND), kind, "{p}");
        assert_eq!(h(dlq::ATTEMPTS), attempts, "{p}");
        assert_eq!(h(dlq::SOURCE_HUB), in_hub, "{p}");
        assert_eq!(h(dlq::SOURCE_GROUP), g, "{p}");
        assert!(
            !h(dlq::ERROR_MESSAGE).contains("hunter2"),
            "{p}: secret in {}",
            h(dlq::ERROR_MESSAGE)
        );
        assert!(!h(dlq::ERROR_MESSAGE).is_empty());
        assert!(
            h(dlq::FIRST_FAILURE) <= h(dlq::LAST_FAILURE),
            "{p}: failure times"
        );
        h(dlq::SOURCE_PARTITION).parse::<u32>().expect("partition");
        h(dlq::SOURCE_OFFSET).parse::<i64>().expect("offset");
    }
    let got = read_all(dst, &out_hub, (count("ok") + count("flaky")) as usize).await;
    assert!(got
        .iter()
        .all(|e| !text(e).starts_with("poison") && !text(e).starts_with("bad")));
    let left = next_uncommitted(src, &in_hub, &g).await;
    assert!(left.is_empty(), "{} events left uncommitted", left.len());
}

/// Without a dead-letter hub the partition stops at the failed event with a clear error, and
/// the group's checkpoint stays right before it.
pub async fn checkpoint_never_passes_failed_event(src: &dyn Harness, dst: &dyn Harness) {
    let source = src.connect().await.expect("connect source");
    let sink = dst.connect().await.expect("connect sink");
    let in_hub = new_hub(src, "src", 1).await;
    let out_hub = new_hub(dst, "dst", 1).await;
    let g = group(src, &in_hub, "stops").await;
    let payloads: Vec<String> = (0..10)
        .map(|i| {
            if i == 5 {
                "bad-5".to_owned()
            } else {
                format!("ok-{i}")
            }
        })
        .collect();
    produce(&source, &in_hub, &payloads).await;
    let calls = Arc::new(Calls::default());
    let pipeline = Pipeline::builder(source.clone(), &in_hub, &g)
        .handler(failing_handler(calls))
        .sink("out", sink.producer(&out_hub).await.expect("sink"))
        .retry(fast_retry(3))
        .build()
        .expect("build");
    let stats = pipeline.stats();
    let outcome = tokio::time::timeout(src.timeout() * 2, pipeline.run(ShutdownToken::new()))
        .await
        .expect("the pipeline stops by itself");
    let err = outcome.expect_err("a failure without dead-letter hub ends the run");
    let msg = err.to_string();
    assert!(msg.contains("no dead-letter hub"), "{msg}");
    assert!(msg.contains("partition 0"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let s = stats.snapshot();
    assert_eq!(s.stopped.len(), 1, "{s:?}");
    let failed_offset = s.stopped[0].offset;
    let next = next_uncommitted(src, &in_hub, &g).await;
    let first = next.first().expect("the failed event is delivered again");
    assert_eq!(
        text(first),
        "bad-5",
        "the checkpoint stays before the failed event"
    );
    assert_eq!(first.offset, failed_offset);
}

/// Shutdown drains and commits; a restarted pipeline continues; nothing is lost; in-flight
/// stays within its bound (backpressure).
pub async fn shutdown_drains_and_restart_resumes(src: &dyn Harness, dst: &dyn Harness) {
    let source = src.connect().await.expect("connect source");
    let sink = dst.connect().await.expect("connect sink");
    let in_hub = new_hub(src, "src", 4).await;
    let out_hub = new_hub(dst, "dst", 4).await;
    let g = group(src, &in_hub, "restart").await;
    let payloads: Vec<String> = (0..160).map(|i| format!("event-{i}")).collect();
    let sent = produce(&source, &in_hub, &payloads).await;
    let max_in_flight = 16usize;
    let peak = Arc::new(AtomicUsize::new(0));
    let build = |sink_producer| {
        Pipeline::builder(source.clone(), &in_hub, &g)
            .handler(handler_fn(|event: ReceivedEvent| async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                Ok(Decision::forward(event.to_event()))
            }))
            .sink("out", sink_producer)
            .max_in_flight(max_in_flight)
            .batch_size(4)
            .commit_interval(Duration::from_millis(50))
    };
    let first: PipelineBuilder = build(sink.producer(&out_hub).await.expect("sink"));
    let pipeline = first.build().expect("build");
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let run = tokio::spawn(pipeline.run(shutdown.clone()));
    let watcher = {
        let (stats, peak) = (stats.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(stats.snapshot().in_flight as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    wait_for(src, &stats, "half handled", |s| s.handled >= 60).await;
    shutdown.shutdown();
    let s1 = run.await.expect("join").expect("clean end");
    watcher.abort();
    assert_eq!(s1.in_flight, 0, "drained: {s1:?}");
    assert!(s1.handled < 160, "stopped before the end: {s1:?}");
    assert!(
        peak.load(Ordering::Relaxed) <= max_in_flight,
        "in-flight peak {} > {max_in_flight}",
        peak.load(Ordering::Relaxed)
    );

    let second = build(sink.producer(&out_hub).await.expect("sink"))
        .build()
        .expect("build");
    let stats2 = second.stats();
    let shutdown2 = ShutdownToken::new();
    let run2 = tokio::spawn(second.run(shutdown2.clone()));
    let rest = 160 - s1.handled;
    wait_for(src, &stats2, "the rest handled", |s| s.handled >= rest).await;
    shutdown2.shutdown();
    let s2 = run2.await.expect("join").expect("clean end");
    let got = read_all(dst, &out_hub, 160).await;
    let duplicates = check_mirror(&sent, &got);
    assert_eq!(
        s1.handled + s2.handled,
        160 + duplicates as u64,
        "{s1:?} {s2:?}"
    );
    assert_eq!(
        duplicates, 0,
        "a drained shutdown commits everything it finished"
    );
}
