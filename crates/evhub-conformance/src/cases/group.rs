//! Consumer-group cases: commits, rebalances, positions, fan-out.

#[allow(unused_imports)]
use super::*;

/// A member commits and leaves; the next member of the group starts right after the checkpoint.
pub async fn commit_then_new_member_resumes(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "resume", 1).await?;
    backend
        .producer(&hub)
        .await?
        .send_batch(numbered("e", 10))
        .await?;
    let g = group(h, &hub, "resume").await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let got = recv_n(h, &*a, 10).await?;
    a.commit(&got[4].checkpoint()).await?;
    a.close().await?;
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let rest = recv_n(h, &*b, 5).await?;
    ensure!(
        texts(&rest) == ["e5", "e6", "e7", "e8", "e9"],
        "after a checkpoint at e4 the next member read {:?}",
        texts(&rest)
    );
    expect_quiet(h, &*b).await?;
    Ok(Outcome::Passed)
}

/// Two live members; one leaves without committing; its events go to the other member again.
pub async fn uncommitted_events_redelivered_after_leave(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "redeliver", 2).await?;
    if !backend.capabilities().explicit_partition {
        return skip(format!(
            "backend `{}` cannot target a partition",
            backend.id()
        ));
    }
    let g = group(h, &hub, "redeliver").await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let assignments = wait_settled(h, &[&*a, &*b], 2).await?;
    let events = (0..2u32)
        .flat_map(|p| (0..5).map(move |i| Event::new(format!("p{p}-{i}")).with_partition(p)))
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    let a_got = recv_n(h, &*a, 5).await?;
    let b_got = recv_n(h, &*b, 5).await?;
    let b_partition = assignments[1][0];
    ensure!(
        b_got.iter().all(|e| e.partition == b_partition),
        "member b read outside its assignment {:?}",
        assignments[1]
    );
    a.commit(&a_got[4].checkpoint()).await?;
    b.close().await?; // leaves without committing
    let again = recv_n(h, &*a, 5).await?;
    let want: Vec<String> = (0..5).map(|i| format!("p{b_partition}-{i}")).collect();
    ensure!(
        texts(&again) == want,
        "after b left, a read {:?}, want {want:?}",
        texts(&again)
    );
    expect_quiet(h, &*a).await?;
    Ok(Outcome::Passed)
}

/// Two members split the partitions; after the group settles no event is lost or read twice.
pub async fn members_split_partitions(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "split", 4).await?;
    let g = group(h, &hub, "split").await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let assignments = wait_settled(h, &[&*a, &*b], 4).await?;
    let n = 40;
    let events = (0..n)
        .map(|i| Event::new(format!("s{i}")).with_key(format!("key-{i}")))
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    let total = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + h.timeout();
    let drain = |member: Arc<dyn Consumer>| {
        let total = total.clone();
        async move {
            let mut got = Vec::new();
            while total.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                if let Ok(event) =
                    tokio::time::timeout(Duration::from_millis(200), member.recv()).await
                {
                    got.push(event?);
                    total.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok::<_, Failure>(got)
        }
    };
    let (a_got, b_got) = tokio::join!(drain(a.clone()), drain(b.clone()));
    let (a_got, b_got) = (a_got?, b_got?);
    for (name, got, owned) in [
        ("a", &a_got, &assignments[0]),
        ("b", &b_got, &assignments[1]),
    ] {
        ensure!(
            got.iter().all(|e| owned.contains(&e.partition)),
            "member {name} read a partition outside its assignment {owned:?}"
        );
    }
    let mut seen = HashSet::new();
    for e in a_got.iter().chain(&b_got) {
        ensure!(seen.insert(text(e)), "event {} read twice", text(e));
    }
    ensure!(seen.len() == n, "received {} of {n} events", seen.len());
    expect_quiet(h, &*a).await?;
    expect_quiet(h, &*b).await?;
    Ok(Outcome::Passed)
}

/// Two consumer groups each receive every event.
pub async fn groups_fan_out(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "fan-out", 2).await?;
    backend
        .producer(&hub)
        .await?
        .send_batch(numbered("f", 20))
        .await?;
    let want: HashSet<String> = (0..20).map(|i| format!("f{i}")).collect();
    for name in ["fan-out-1", "fan-out-2"] {
        let consumer = join(h, &hub, ConsumerOptions::new(group(h, &hub, name).await?)).await?;
        let got: HashSet<String> = texts(&recv_n(h, &*consumer, 20).await?)
            .into_iter()
            .collect();
        ensure!(got == want, "group {name} received {got:?}");
        consumer.close().await?;
    }
    Ok(Outcome::Passed)
}

/// An event over the size limit fails with `TooLarge`, alone or in a batch, stores nothing, and
/// the producer keeps working.
pub async fn too_large_rejected_and_producer_survives(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "too-large", 1).await?;
    let max = backend.capabilities().max_event_bytes;
    let producer = backend.producer(&hub).await?;
    let huge = Event::new(vec![b'x'; max + 1024]);
    match producer.send(huge.clone()).await {
        Err(e) if e.kind() == ErrorKind::TooLarge => {
            ensure!(!e.is_retriable(), "TooLarge must not be retriable");
        }
        other => return Err(format!("oversize send: want TooLarge, got {other:?}").into()),
    }
    match producer
        .send_batch(vec![Event::new("small-in-batch"), huge])
        .await
    {
        Err(e) if e.kind() == ErrorKind::TooLarge => {}
        other => {
            return Err(
                format!("batch with an oversize event: want TooLarge, got {other:?}").into(),
            )
        }
    }
    producer.send(Event::new("after")).await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "too-large").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, 1).await?;
    ensure!(
        text(&got[0]) == "after",
        "first stored event is {}",
        text(&got[0])
    );
    expect_quiet(h, &*consumer).await?;
    Ok(Outcome::Passed)
}

/// A hub that does not exist gives `NotFound` for metadata, producing and consuming.
pub async fn unknown_hub_not_found(h: &dyn Harness) -> CaseResult {
    let backend = h.connect().await?;
    let hub = unique_name("missing");
    match backend.hub_properties(&hub).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => return Err(format!("hub_properties: want NotFound, got {other:?}").into()),
    }
    let sent = match backend.producer(&hub).await {
        Ok(p) => p.send(Event::new("x")).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match sent {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => return Err(format!("producing: want NotFound, got {other:?}").into()),
    }
    let received = match backend
        .consumer(&hub, ConsumerOptions::new("$Default"))
        .await
    {
        Ok(c) => tokio::time::timeout(h.timeout(), c.recv())
            .await
            .map_err(|_| {
                Failure::from(format!(
                    "consuming a missing hub hung for {:?}",
                    h.timeout()
                ))
            })?
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match received {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Outcome::Passed),
        other => Err(format!("consuming: want NotFound, got {other:?}").into()),
    }
}

/// Producers, consumers and readers fail with `Closed` after `close`.
pub async fn use_after_close_is_closed(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "closed", 1).await?;
    let producer = backend.producer(&hub).await?;
    producer.send(Event::new("one")).await?;
    producer.close().await?;
    let kind = |r: evhub_core::Result<()>| r.err().map(|e| e.kind());
    ensure!(
        kind(producer.send(Event::new("x")).await.map(|_| ())) == Some(ErrorKind::Closed),
        "send after close did not fail with Closed"
    );
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "closed").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, 1).await?;
    consumer.close().await?;
    ensure!(
        kind(consumer.recv().await.map(|_| ())) == Some(ErrorKind::Closed),
        "recv after close"
    );
    ensure!(
        kind(consumer.commit(&got[0].checkpoint()).await.map(|_| ())) == Some(ErrorKind::Closed),
        "commit after close"
    );
    if backend.capabilities().partition_reader {
        let reader = backend
            .partition_reader(&hub, ReaderOptions::new(0, StartPosition::Earliest))
            .await?;
        reader.close().await?;
        ensure!(
            kind(reader.recv().await.map(|_| ())) == Some(ErrorKind::Closed),
            "read after close"
        );
    }
    Ok(Outcome::Passed)
}

/// Many producers send at once; every event arrives once, each producer's events in order.
pub async fn concurrent_producers_totals(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "concurrent", 4).await?;
    let (producers, per) = (8, 25);
    let mut tasks = Vec::new();
    for p in 0..producers {
        let backend = backend.clone();
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let producer = backend.producer(&hub).await?;
            for i in 0..per {
                producer
                    .send(Event::new(format!("{p}:{i}")).with_key(format!("producer-{p}")))
                    .await?;
            }
            producer.close().await
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| Failure::from(format!("producer task panicked: {e}")))??;
    }
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "concurrent").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, producers * per).await?;
    let mut next = vec![0usize; producers];
    let mut seen = HashSet::new();
    for e in &got {
        let t = text(e);
        ensure!(seen.insert(t.clone()), "duplicate {t}");
        let (p, i) = t
            .split_once(':')
            .and_then(|(p, i)| Some((p.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .ok_or_else(|| Failure::from(format!("foreign event {t}")))?;
        ensure!(
            next[p] == i,
            "producer {p}: got event {i}, expected {}",
            next[p]
        );
        next[p] += 1;
    }
    expect_quiet(h, &*consumer).await?;
    Ok(Outcome::Passed)
}

/// Events of one hub never appear on another.
pub async fn hub_isolation(h: &dyn Harness) -> CaseResult {
    let (backend, x) = setup(h, "iso-x", 2).await?;
    let y = unique_name("iso-y");
    h.create_hub(&y, 2).await?;
    backend
        .producer(&x)
        .await?
        .send_batch(numbered("x", 5))
        .await?;
    backend
        .producer(&y)
        .await?
        .send_batch(numbered("y", 5))
        .await?;
    for (hub, prefix) in [(&x, "x"), (&y, "y")] {
        let consumer = join(h, hub, ConsumerOptions::new(group(h, hub, "iso").await?)).await?;
        let got = recv_n(h, &*consumer, 5).await?;
        ensure!(
            got.iter()
                .all(|e| text(e).starts_with(prefix) && *e.hub == **hub),
            "hub {hub} delivered {:?}",
            texts(&got)
        );
        expect_quiet(h, &*consumer).await?;
    }
    Ok(Outcome::Passed)
}

/// A member that restarts (new connection, same group) resumes after its last commit.
pub async fn restart_resumes_after_last_commit(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "restart", 1).await?;
    backend
        .producer(&hub)
        .await?
        .send_batch(numbered("r", 8))
        .await?;
    let g = group(h, &hub, "restart").await?;
    {
        let first = h.connect().await?;
        let consumer = first.consumer(&hub, ConsumerOptions::new(&g)).await?;
        let got = recv_n(h, &*consumer, 8).await?;
        consumer.commit(&got[2].checkpoint()).await?;
        consumer.commit(&got[5].checkpoint()).await?;
        consumer.close().await?;
    }
    let again = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let rest = recv_n(h, &*again, 2).await?;
    ensure!(
        texts(&rest) == ["r6", "r7"],
        "restarted member read {:?}",
        texts(&rest)
    );
    expect_quiet(h, &*again).await?;
    Ok(Outcome::Passed)
}

/// A new group starts at the configured default (earliest), or at latest when asked.
pub async fn new_group_starts_at_configured_position(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "initial", 1).await?;
    let producer = backend.producer(&hub).await?;
    producer.send_batch(numbered("old", 3)).await?;
    let default_group = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "initial-d").await?),
    )
    .await?;
    let got = recv_n(h, &*default_group, 3).await?;
    ensure!(
        texts(&got) == ["old0", "old1", "old2"],
        "default group read {:?}",
        texts(&got)
    );
    let latest = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "initial-l").await?)
            .with_initial_position(InitialPosition::Latest),
    )
    .await?;
    wait_assigned(h, &*latest).await?;
    let deadline = Instant::now() + h.timeout();
    let mut attempt = 0;
    let first = loop {
        producer.send(Event::new(format!("new{attempt}"))).await?;
        attempt += 1;
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(2), latest.recv()).await {
            break event?;
        }
        ensure!(
            Instant::now() < deadline,
            "latest group saw nothing within {:?}",
            h.timeout()
        );
    };
    ensure!(
        text(&first).starts_with("new"),
        "latest group started at old event {}",
        text(&first)
    );
    Ok(Outcome::Passed)
}

/// With [`CommitTracker`], a failed event blocks the checkpoint, so the next member gets it again
/// (the data-loss trap of committing a later event after an earlier one failed).
pub async fn commit_tracker_never_skips_failed_event(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "tracker", 1).await?;
    backend
        .producer(&hub)
        .await?
        .send_batch(numbered("t", 4))
        .await?;
    let g = group(h, &hub, "tracker").await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let got = recv_n(h, &*a, 4).await?;
    let mut tracker = CommitTracker::new();
    got.iter().for_each(|e| tracker.received(e));
    for i in [0, 2, 3] {
        tracker.ack(&got[i]); // t1 "failed"
    }
    let ready = tracker.ready();
    ensure!(
        ready.len() == 1 && ready[0].offset == got[0].offset,
        "tracker offered {ready:?}, want only t0"
    );
    for cp in &ready {
        a.commit(cp).await?;
        tracker.committed(cp);
    }
    a.close().await?;
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let again = recv_n(h, &*b, 3).await?;
    ensure!(
        texts(&again) == ["t1", "t2", "t3"],
        "next member read {:?}",
        texts(&again)
    );
    Ok(Outcome::Passed)
}

/// A W3C `traceparent` injected by the producer is extracted unchanged by the consumer.
pub async fn traceparent_crosses_the_hub(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "trace", 1).await?;
    if !backend.capabilities().headers {
        return skip(format!("backend `{}` does not carry headers", backend.id()));
    }
    let ctx = TraceContext::new_root();
    let mut event = Event::new("traced");
    ctx.inject(&mut event.headers);
    backend.producer(&hub).await?.send(event).await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "trace").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, 1).await?;
    let extracted = TraceContext::extract(&got[0].headers)
        .ok_or_else(|| Failure::from(format!("no traceparent in {:?}", got[0].headers)))?;
    ensure!(extracted == ctx, "traceparent {extracted} != sent {ctx}");
    Ok(Outcome::Passed)
}
