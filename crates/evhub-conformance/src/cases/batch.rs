//! Batch receive: order, revocation and cancel-safety of `recv_batch`.

#[allow(unused_imports)]
use super::*;

/// Receives batches until `n` events arrived or the harness timeout passed; checks each batch
/// respects `max`.
async fn recv_batches(
    h: &dyn Harness,
    consumer: &dyn Consumer,
    n: usize,
    max: usize,
) -> Result<Vec<Vec<ReceivedEvent>>, Failure> {
    let deadline = Instant::now() + h.timeout();
    let mut batches = Vec::new();
    let mut total = 0;
    while total < n {
        ensure!(
            Instant::now() < deadline,
            "received {total} of {n} events within {:?}",
            h.timeout()
        );
        let batch = consumer.recv_batch(max, Duration::from_millis(200)).await?;
        ensure!(
            batch.len() <= max,
            "batch of {} over max {max}",
            batch.len()
        );
        total += batch.len();
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// Batches keep per-partition order, respect `max`, and together hold every event once; a
/// partition reader's batches too.
pub async fn batch_preserves_partition_order(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "batch-order", 3).await?;
    let n = 300;
    let events: Vec<Event> = (0..n)
        .map(|i| Event::new(format!("{}:{i}", i % 7)).with_key(format!("k{}", i % 7)))
        .collect();
    let producer = backend.producer(&hub).await?;
    for chunk in events.chunks(50) {
        producer.send_batch(chunk.to_vec()).await?;
    }
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "batch-order").await?),
    )
    .await?;
    let batches = recv_batches(h, &*consumer, n, 64).await?;
    let mut last_offset: BTreeMap<u32, i64> = BTreeMap::new();
    let mut last_per_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for event in batches.iter().flatten() {
        if let Some(prev) = last_offset.insert(event.partition, event.offset) {
            ensure!(
                event.offset > prev,
                "partition {} went from offset {prev} to {}",
                event.partition,
                event.offset
            );
        }
        let t = text(event);
        let (key, i) = t.split_once(':').unwrap_or_default();
        let i: usize = i.parse().unwrap_or_default();
        if let Some(prev) = last_per_key.insert(key.to_owned(), i) {
            ensure!(i > prev, "key {key}: event {i} after {prev}");
        }
        ensure!(seen.insert(t.clone()), "event {t} received twice");
    }
    ensure!(seen.len() == n, "received {} of {n}", seen.len());
    expect_quiet(h, &*consumer).await?;
    if backend.capabilities().partition_reader {
        let reader = backend
            .partition_reader(&hub, ReaderOptions::new(0, StartPosition::Earliest))
            .await?;
        let want = last_offset.get(&0).map_or(0, |_| {
            batches
                .iter()
                .flatten()
                .filter(|e| e.partition == 0)
                .count()
        });
        let mut got = Vec::new();
        let deadline = Instant::now() + h.timeout();
        while got.len() < want && Instant::now() < deadline {
            let batch = reader.recv_batch(16, Duration::from_millis(200)).await?;
            ensure!(batch.len() <= 16, "reader batch of {}", batch.len());
            got.extend(batch);
        }
        ensure!(got.len() == want, "reader read {} of {want}", got.len());
        ensure!(
            got.windows(2).all(|w| w[1].offset > w[0].offset),
            "reader batches out of order"
        );
    }
    Ok(Outcome::Passed)
}

/// After a rebalance took partitions away, no batch holds an event of a revoked partition,
/// even if the member had fetched ahead on it.
pub async fn batch_never_returns_revoked_partition(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "batch-revoke", 4).await?;
    let g = group(h, &hub, "batch-revoke").await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    wait_assigned(h, &*a).await?;
    let events: Vec<Event> = (0..400)
        .map(|i| Event::new(format!("r{i}")).with_key(format!("key-{i}")))
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    // Let `a` fetch ahead on every partition, but take only a few events.
    let first = recv_batches(h, &*a, 1, 4).await?;
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    // Keep `a` polling (a member that never calls in may not complete a rebalance on every
    // backend) until the group has settled.
    let deadline = Instant::now() + h.timeout();
    let mut a_before = first.concat();
    let assignments = loop {
        let settled = {
            let mut aa = a.assignment().await?;
            let mut bb = b.assignment().await?;
            aa.sort_unstable();
            bb.sort_unstable();
            (!aa.is_empty() && !bb.is_empty() && aa.len() + bb.len() == 4).then_some((aa, bb))
        };
        if let Some(s) = settled {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "group did not settle within {:?}",
            h.timeout()
        );
        a_before.extend(a.recv_batch(4, Duration::from_millis(50)).await?);
        let _ = b.recv_batch(1, Duration::from_millis(10)).await?;
    };
    let (a_owned, _) = assignments;
    let quiet = Instant::now() + h.quiet_period() * 2;
    while Instant::now() < quiet {
        let batch = a.recv_batch(64, Duration::from_millis(100)).await?;
        let a_now = a.assignment().await?;
        for e in &batch {
            ensure!(
                a_owned.contains(&e.partition) || a_now.contains(&e.partition),
                "batch after the rebalance holds event {} of partition {} owned by the other member (a owns {a_owned:?})",
                text(e),
                e.partition
            );
        }
    }
    drop(a_before);
    Ok(Outcome::Passed)
}

/// Dropping a pending `recv_batch` (timeouts, `select!`) loses no event.
pub async fn batch_recv_is_cancel_safe(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "batch-cancel", 2).await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "batch-cancel").await?),
    )
    .await?;
    wait_assigned(h, &*consumer).await?;
    let n = 200;
    let producer = backend.producer(&hub).await?;
    let send = async {
        for chunk in numbered("c", n).chunks(10) {
            producer.send_batch(chunk.to_vec()).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<_, Failure>(())
    };
    let receive = async {
        let mut got = Vec::new();
        let mut cancelled = 0;
        let deadline = Instant::now() + h.timeout();
        while got.len() < n && Instant::now() < deadline {
            // A long wait cut short by a timer: the pending receive is dropped over and over.
            match tokio::time::timeout(
                Duration::from_millis(3),
                consumer.recv_batch(7, Duration::from_secs(30)),
            )
            .await
            {
                Ok(batch) => got.extend(batch?),
                Err(_) => cancelled += 1,
            }
        }
        Ok::<_, Failure>((got, cancelled))
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    let (got, cancelled) = received?;
    let mut seen = HashSet::new();
    for e in &got {
        ensure!(seen.insert(text(e)), "event {} received twice", text(e));
    }
    ensure!(
        seen.len() == n,
        "received {} of {n} events with {cancelled} cancelled receives",
        seen.len()
    );
    ensure!(
        cancelled > 0,
        "no receive was cancelled; the case proved nothing"
    );
    Ok(Outcome::Passed)
}

/// Several batches queued with `enqueue_batch` before any acknowledgement is awaited are
/// stored once each, in call order within the partition; an oversize event fails its batch
/// (from the call or from its `PendingBatch`) without storing any of it, and the producer
/// keeps working.
pub async fn enqueued_batches_keep_order(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "enqueue-order", 2).await?;
    let producer = backend.producer(&hub).await?;
    let explicit = backend.capabilities().explicit_partition;
    // One partition for all: explicit where supported, else one key.
    let event = |i: usize| {
        let e = Event::new(format!("e{i}"));
        if explicit {
            e.with_partition(1)
        } else {
            e.with_key("one-key")
        }
    };
    let (batches, per) = (6, 25);
    let mut pending = Vec::new();
    for b in 0..batches {
        let events = (b * per..(b + 1) * per).map(event).collect();
        pending.push(producer.enqueue_batch(events).await?);
    }
    let mut last: Option<(Option<u32>, i64)> = None;
    for (b, batch) in pending.into_iter().enumerate() {
        let deliveries = batch.await?;
        ensure!(
            deliveries.len() == per,
            "batch {b}: {} deliveries for {per} events",
            deliveries.len()
        );
        for d in deliveries {
            if let (Some(offset), Some((partition, prev))) = (d.offset, last) {
                ensure!(
                    d.partition != partition || offset > prev,
                    "batch {b}: offset {offset} after {prev} in partition {:?}",
                    d.partition
                );
            }
            if let Some(offset) = d.offset {
                last = Some((d.partition, offset));
            }
        }
    }
    let max = backend.capabilities().max_event_bytes;
    let oversize = vec![event(9998), Event::new(vec![b'x'; max + 1024]), event(9999)];
    match producer.enqueue_batch(oversize).await {
        Err(e) if e.kind() == ErrorKind::TooLarge => {}
        Ok(batch) => match batch.await {
            Err(e) if e.kind() == ErrorKind::TooLarge => {}
            other => {
                return Err(
                    format!("batch with an oversize event: want TooLarge, got {other:?}").into(),
                )
            }
        },
        Err(other) => {
            return Err(format!("batch with an oversize event: want TooLarge, got {other}").into())
        }
    }
    producer
        .enqueue_batch(vec![event(batches * per)])
        .await?
        .await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "enqueue-order").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, batches * per + 1).await?;
    let want: Vec<String> = (0..=batches * per).map(|i| format!("e{i}")).collect();
    ensure!(
        texts(&got) == want,
        "stored order differs: {:?}",
        texts(&got)
    );
    expect_quiet(h, &*consumer).await?;
    Ok(Outcome::Passed)
}
