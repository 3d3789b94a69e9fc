//! Batches in flight at a sink (`batches_in_flight`): several are queued at once, they are
//! finished in order, and a failed one is sent again together with every batch queued after
//! it, so the last copy of each event in the sink is in source order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub_core::memory::MemoryBackend;
use evhub_core::{
    async_trait, Backend, ConsumerOptions, Delivery, Error, ErrorKind, Event, HubOptions,
    InitialPosition, PendingBatch, Producer, Result,
};
use evhub_pipeline::{Pipeline, RetryPolicy, ShutdownToken, StatsSnapshot};

/// What the test sink does on one `enqueue_batch` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The events are stored, but the acknowledgement reports a retriable failure.
    AckFailsAfterStoring,
    /// Nothing is queued: the call itself fails (retriable).
    RefusedAtEnqueue,
}

/// A sink over a memory producer that stores each batch when it is queued and acknowledges it
/// `ack_delay` later, counting how many batches are unacknowledged at once.
#[derive(Debug)]
struct TestSink {
    inner: Arc<dyn Producer>,
    ack_delay: Duration,
    fault_at: Option<(usize, Fault)>,
    calls: AtomicUsize,
    outstanding: Arc<AtomicUsize>,
    max_outstanding: AtomicUsize,
}

impl TestSink {
    fn new(
        inner: Arc<dyn Producer>,
        ack_delay: Duration,
        fault_at: Option<(usize, Fault)>,
    ) -> Self {
        Self {
            inner,
            ack_delay,
            fault_at,
            calls: AtomicUsize::new(0),
            outstanding: Arc::new(AtomicUsize::new(0)),
            max_outstanding: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Producer for TestSink {
    fn hub(&self) -> &str {
        self.inner.hub()
    }

    async fn send(&self, event: Event) -> Result<Delivery> {
        self.inner.send(event).await
    }

    async fn send_batch(&self, events: Vec<Event>) -> Result<Vec<Delivery>> {
        self.inner.send_batch(events).await
    }

    async fn enqueue_batch(&self, events: Vec<Event>) -> Result<PendingBatch> {
        let call = self.calls.fetch_add(1, SeqCst);
        let fault = match self.fault_at {
            Some((at, fault)) if at == call => fault,
            _ => Fault::None,
        };
        if fault == Fault::RefusedAtEnqueue {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "test sink: queue refused",
            ));
        }
        // Stored now, in call order; acknowledged later.
        let result = self.inner.send_batch(events).await;
        let now = self.outstanding.fetch_add(1, SeqCst) + 1;
        self.max_outstanding.fetch_max(now, SeqCst);
        let (outstanding, delay) = (self.outstanding.clone(), self.ack_delay);
        Ok(PendingBatch::new(async move {
            tokio::time::sleep(delay).await;
            outstanding.fetch_sub(1, SeqCst);
            match fault {
                Fault::AckFailsAfterStoring => Err(Error::new(
                    ErrorKind::Unavailable,
                    "test sink: acknowledgement lost",
                )),
                _ => result,
            }
        }))
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct Run {
    sink: Vec<String>,
    summary: StatsSnapshot,
    max_outstanding: usize,
    backend: Arc<dyn Backend>,
}

/// Mirrors `n` events from a one-partition hub into a one-partition hub through a
/// [`TestSink`], then reads the sink hub back.
async fn mirror(n: usize, window: usize, fault_at: Option<(usize, Fault)>) -> Run {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    for hub in ["src", "dst"] {
        backend
            .create_hub(hub, HubOptions::with_partitions(1))
            .await
            .unwrap();
    }
    let events: Vec<Event> = (0..n).map(|i| Event::new(format!("e{i}"))).collect();
    backend
        .producer("src")
        .await
        .unwrap()
        .send_batch(events)
        .await
        .unwrap();
    let sink = Arc::new(TestSink::new(
        backend.producer("dst").await.unwrap(),
        Duration::from_millis(20),
        fault_at,
    ));
    let pipeline = Pipeline::builder(backend.clone(), "src", "mirror")
        .consumer_options(
            ConsumerOptions::new("mirror").with_initial_position(InitialPosition::Earliest),
        )
        .sink("dst", sink.clone())
        .batch_size(10)
        .batches_in_flight(window)
        .retry(
            RetryPolicy::default()
                .with_max_attempts(5)
                .with_backoff(Duration::from_millis(5), Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.snapshot().handled < n as u64 {
        assert!(
            Instant::now() < deadline,
            "handled {} of {n}",
            stats.snapshot().handled
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.shutdown();
    let summary = running.await.unwrap().unwrap();
    Run {
        sink: read_all(&backend, "dst", "reader").await,
        summary,
        max_outstanding: sink.max_outstanding.load(SeqCst),
        backend,
    }
}

/// Every event of `hub` from the start, until nothing arrives for 300 ms.
async fn read_all(backend: &Arc<dyn Backend>, hub: &str, group: &str) -> Vec<String> {
    let consumer = backend
        .consumer(
            hub,
            ConsumerOptions::new(group).with_initial_position(InitialPosition::Earliest),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = consumer
            .recv_batch(1000, Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(
            batch
                .iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned()),
        );
    }
    consumer.close().await.unwrap();
    out
}

/// Every source event is in the sink, and the last copies are in source order.
fn assert_complete_and_last_copies_in_order(sink: &[String], n: usize) {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, e) in sink.iter().enumerate() {
        last.insert(e, i);
    }
    let want: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    for e in &want {
        assert!(
            last.contains_key(e.as_str()),
            "{e} is missing from the sink"
        );
    }
    let mut by_last: Vec<(&usize, &&str)> = last.iter().map(|(e, i)| (i, e)).collect();
    by_last.sort();
    let order: Vec<&str> = by_last.into_iter().map(|(_, e)| *e).collect();
    assert_eq!(order, want, "last copies out of source order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_batches_are_in_flight_and_stored_once_in_order() {
    let run = mirror(200, 4, None).await;
    let want: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
    assert_eq!(run.sink, want);
    assert!(
        run.max_outstanding >= 3,
        "at most {} batches were in flight at once (window 4)",
        run.max_outstanding
    );
    assert_eq!((run.summary.handled, run.summary.produced), (200, 200));
    assert_eq!(run.summary.retried, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_in_flight_when_asked() {
    let run = mirror(60, 1, None).await;
    assert_eq!(run.max_outstanding, 1);
    assert_eq!(run.sink.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_replays_the_batch_and_those_after_it_in_order() {
    let run = mirror(200, 4, Some((2, Fault::AckFailsAfterStoring))).await;
    assert_complete_and_last_copies_in_order(&run.sink, 200);
    assert!(
        run.sink.len() > 200,
        "the failed batch was stored and sent again: duplicates expected, got {}",
        run.sink.len()
    );
    assert!(run.summary.retried >= 1, "{:?}", run.summary);
    assert_eq!(run.summary.handled, 200);
    // Everything was committed: the group has nothing left.
    assert!(read_all(&run.backend, "src", "mirror").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_sent_again_in_order() {
    let run = mirror(200, 4, Some((2, Fault::RefusedAtEnqueue))).await;
    assert_complete_and_last_copies_in_order(&run.sink, 200);
    assert!(run.summary.retried >= 1, "{:?}", run.summary);
    assert_eq!(run.summary.handled, 200);
    assert!(read_all(&run.backend, "src", "mirror").await.is_empty());
}
