//! Producing, reading and metadata cases.

#[allow(unused_imports)]
use super::*;

/// One event with key and header goes through a consumer group unchanged, with its origin.
pub async fn round_trip(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "round-trip", 2).await?;
    let caps = backend.capabilities();
    let before = SystemTime::now();
    let mut event = Event::new("hello").with_key("k1");
    if caps.headers {
        event = event.with_header("h", "v");
    }
    let delivery = backend.producer(&hub).await?.send(event).await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "round-trip").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, 1).await?.remove(0);
    ensure!(&got.payload[..] == b"hello", "payload {:?}", got.payload);
    ensure!(got.key.as_deref() == Some(&b"k1"[..]), "key {:?}", got.key);
    if caps.headers {
        ensure!(
            got.header("h").map(|v| &v[..]) == Some(&b"v"[..]),
            "headers {:?}",
            got.headers
        );
    }
    ensure!(*got.hub == *hub, "hub `{}`", got.hub);
    if let Some(p) = delivery.partition {
        ensure!(
            got.partition == p,
            "delivered to {p}, read from {}",
            got.partition
        );
    }
    if let Some(o) = delivery.offset {
        ensure!(
            got.offset == o,
            "delivered at offset {o}, read at {}",
            got.offset
        );
    }
    if let Some(t) = got.enqueued_at {
        let slack = Duration::from_secs(60);
        ensure!(
            t + slack >= before && t <= SystemTime::now() + slack,
            "enqueued_at {t:?} is far from the send time {before:?}"
        );
    }
    let cp = got.checkpoint();
    ensure!(
        cp.hub == hub && cp.partition == got.partition && cp.offset == got.offset,
        "checkpoint {cp:?} does not match the event"
    );
    consumer.commit(&cp).await?;
    consumer.close().await?;
    Ok(Outcome::Passed)
}

/// A batch is acknowledged per event and every event arrives once.
pub async fn batch_send(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "batch", 3).await?;
    let n = 50;
    let deliveries = backend
        .producer(&hub)
        .await?
        .send_batch(numbered("b", n))
        .await?;
    ensure!(
        deliveries.len() == n,
        "{} deliveries for {n} events",
        deliveries.len()
    );
    let positions: HashSet<_> = deliveries
        .iter()
        .filter_map(|d| d.partition.zip(d.offset))
        .collect();
    let reported = deliveries
        .iter()
        .filter(|d| d.partition.zip(d.offset).is_some())
        .count();
    ensure!(
        positions.len() == reported,
        "two events acknowledged at the same position"
    );
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "batch").await?),
    )
    .await?;
    let got: HashSet<String> = texts(&recv_n(h, &*consumer, n).await?)
        .into_iter()
        .collect();
    let want: HashSet<String> = (0..n).map(|i| format!("b{i}")).collect();
    ensure!(got == want, "received {got:?}");
    expect_quiet(h, &*consumer).await?;
    Ok(Outcome::Passed)
}

/// Events with the same key land on one partition and keep their order, also within one batch.
pub async fn key_routes_to_one_partition_in_order(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "key-order", 4).await?;
    let (keys, per_key) = (5, 10);
    let events: Vec<Event> = (0..per_key)
        .flat_map(|seq| {
            (0..keys).map(move |k| Event::new(format!("k{k}:{seq}")).with_key(format!("key-{k}")))
        })
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "key-order").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, keys * per_key).await?;
    let mut by_key: BTreeMap<String, Vec<&ReceivedEvent>> = BTreeMap::new();
    for e in &got {
        let key = String::from_utf8_lossy(e.key.as_deref().unwrap_or_default()).into_owned();
        by_key.entry(key).or_default().push(e);
    }
    ensure!(by_key.len() == keys, "keys seen: {:?}", by_key.keys());
    for (key, events) in by_key {
        let partitions: HashSet<_> = events.iter().map(|e| e.partition).collect();
        ensure!(
            partitions.len() == 1,
            "key {key} spread over partitions {partitions:?}"
        );
        let seqs: Vec<usize> = events
            .iter()
            .filter_map(|e| text(e).split(':').nth(1).and_then(|s| s.parse().ok()))
            .collect();
        ensure!(
            seqs == (0..per_key).collect::<Vec<_>>(),
            "key {key} arrived as {seqs:?}"
        );
        ensure!(
            events.windows(2).all(|w| w[0].offset < w[1].offset),
            "key {key}: offsets not increasing"
        );
    }
    Ok(Outcome::Passed)
}

/// Keys, payloads and headers survive byte for byte: empty payload, all byte values, unicode
/// header names, empty and binary header values.
pub async fn headers_and_key_byte_exact(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "bytes", 1).await?;
    let caps = backend.capabilities();
    if !caps.headers {
        return skip(format!("backend `{}` does not carry headers", backend.id()));
    }
    let all_bytes: Bytes = (0..=255u8).collect::<Vec<u8>>().into();
    let binary_key: Bytes = if caps.binary_keys {
        Bytes::from_static(&[0, 159, 146, 150, 255])
    } else {
        Bytes::from("ключ-🔑")
    };
    let sent = vec![
        Event::new(Bytes::new()).with_key("empty-payload"),
        Event::new(all_bytes.clone()).with_key(binary_key.clone()),
        Event::new("with-headers")
            .with_header("naïve-名前-🎉", "värde")
            .with_header("empty", Bytes::new())
            .with_header("binary", Bytes::from_static(&[0, 255, 1, 254])),
    ];
    backend
        .producer(&hub)
        .await?
        .send_batch(sent.clone())
        .await?;
    let consumer = join(
        h,
        &hub,
        ConsumerOptions::new(group(h, &hub, "bytes").await?),
    )
    .await?;
    let got = recv_n(h, &*consumer, 3).await?;
    for want in &sent {
        let Some(e) = got.iter().find(|e| e.payload == want.payload) else {
            return Err(format!("payload {:?} not received byte-exact", want.payload).into());
        };
        ensure!(
            e.key == want.key,
            "key {:?} came back as {:?}",
            want.key,
            e.key
        );
        let mut a = e.headers.clone();
        let mut b = want.headers.clone();
        a.sort();
        b.sort();
        ensure!(a == b, "headers {b:?} came back as {a:?}");
    }
    Ok(Outcome::Passed)
}

/// Partition ids, per-partition offsets and last enqueued time are reported.
pub async fn hub_and_partition_metadata(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "metadata", 3).await?;
    if !backend.capabilities().explicit_partition {
        return skip(format!(
            "backend `{}` cannot target a partition",
            backend.id()
        ));
    }
    let props = backend.hub_properties(&hub).await?;
    ensure!(props.name == hub, "hub name {}", props.name);
    ensure!(
        props.partitions == vec![0, 1, 2],
        "partitions {:?}",
        props.partitions
    );
    let before = SystemTime::now();
    let events = (0..4)
        .map(|i| Event::new(format!("m{i}")).with_partition(1))
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    let p1 = backend.partition_properties(&hub, 1).await?;
    ensure!(
        p1.partition == 1 && p1.hub == hub,
        "wrong partition properties {p1:?}"
    );
    ensure!(
        p1.len() == 4,
        "partition 1 holds {} events, want 4 ({p1:?})",
        p1.len()
    );
    if let Some(t) = p1.last_enqueued_at {
        let slack = Duration::from_secs(60);
        ensure!(
            t + slack >= before && t <= SystemTime::now() + slack,
            "last enqueued {t:?}"
        );
    }
    let p0 = backend.partition_properties(&hub, 0).await?;
    ensure!(p0.is_empty(), "partition 0 should be empty: {p0:?}");
    match backend.partition_properties(&hub, 3).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => return Err(format!("partition 3 of 3: want NotFound, got {other:?}").into()),
    }
    Ok(Outcome::Passed)
}

/// Partition readers start at earliest, latest, an offset (inclusive), after an offset, a time.
pub async fn reader_start_positions(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "positions", 1).await?;
    let caps = backend.capabilities();
    if !caps.partition_reader {
        return skip(format!(
            "backend `{}` has no partition reader",
            backend.id()
        ));
    }
    let producer = backend.producer(&hub).await?;
    producer.send_batch(numbered("e", 5)).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let boundary = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    producer
        .send_batch((5..10).map(|i| Event::new(format!("e{i}"))).collect())
        .await?;

    let open = |start: StartPosition| {
        let backend = backend.clone();
        let hub = hub.clone();
        async move {
            backend
                .partition_reader(&hub, ReaderOptions::new(0, start))
                .await
        }
    };
    let all = read_n(h, &*open(StartPosition::Earliest).await?, 10).await?;
    let want: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    ensure!(texts(&all) == want, "earliest read {:?}", texts(&all));
    ensure!(
        all.windows(2).all(|w| w[1].offset == w[0].offset + 1),
        "offsets not consecutive"
    );

    let at = read_n(h, &*open(StartPosition::Offset(all[3].offset)).await?, 1).await?;
    ensure!(
        text(&at[0]) == "e3",
        "Offset(e3) started at {}",
        text(&at[0])
    );
    let after = read_n(h, &*open(StartPosition::After(all[3].offset)).await?, 1).await?;
    ensure!(
        text(&after[0]) == "e4",
        "After(e3) started at {}",
        text(&after[0])
    );
    if caps.seek_by_time {
        let t = read_n(h, &*open(StartPosition::Time(boundary)).await?, 1).await?;
        ensure!(
            text(&t[0]) == "e5",
            "Time(boundary) started at {}",
            text(&t[0])
        );
    }
    // Latest: keep sending until the reader sees something; it must never see e0..e9.
    let reader = open(StartPosition::Latest).await?;
    let deadline = Instant::now() + h.timeout();
    let mut attempt = 0;
    let first = loop {
        producer.send(Event::new(format!("late{attempt}"))).await?;
        attempt += 1;
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await {
            break event?;
        }
        ensure!(
            Instant::now() < deadline,
            "Latest reader saw nothing within {:?}",
            h.timeout()
        );
    };
    ensure!(
        text(&first).starts_with("late"),
        "Latest reader started at old event {}",
        text(&first)
    );
    if !caps.seek_by_time {
        return skip(format!(
            "earliest/latest/offset passed; time positions: backend `{}` cannot seek by time",
            backend.id()
        ));
    }
    Ok(Outcome::Passed)
}
