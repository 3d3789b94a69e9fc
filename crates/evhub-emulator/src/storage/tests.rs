use super::*;
use fe2o3_amqp_types::messaging::{Batch, Data, Message};
use segment::list_segments;
use serde_amqp::primitives::Binary;

fn event(text: &str) -> OpaqueMessage {
    Message::builder()
        .body(Body::Data(Batch::new(vec![Data(Binary::from(
            text.as_bytes().to_vec(),
        ))])))
        .build()
}

fn body_text(e: &StoredEvent) -> String {
    match &e.sendable.message.body {
        Body::Data(batch) => String::from_utf8(batch[0].0.to_vec()).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

fn memory() -> StorageOptions {
    StorageOptions::in_memory(64 * 1024 * 1024)
}

fn sequences(events: &[Arc<StoredEvent>]) -> Vec<i64> {
    events.iter().map(|e| e.sequence).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, _, p)| p)
        .collect()
}

#[test]
fn sequence_offsets_and_positions() {
    let log = PartitionLog::open(None, memory()).unwrap();
    assert_eq!(log.resolve(&StartPosition::Latest), 0);
    assert!(log.snapshot().is_empty);
    assert_eq!(log.snapshot().last_sequence, -1);
    log.append(vec![event("a"), event("b"), event("c")])
        .unwrap();
    let all = log.read_from(0, 10);
    assert_eq!(sequences(&all), [0, 1, 2]);
    assert!(all[0].offset < all[1].offset && all[1].offset < all[2].offset);
    assert_eq!(body_text(&all[1]), "b");
    let snap = log.snapshot();
    assert_eq!((snap.begin_sequence, snap.last_sequence), (0, 2));
    assert_eq!(snap.last_offset, all[2].offset);
    use StartPosition::*;
    assert_eq!(log.resolve(&Earliest), 0);
    assert_eq!(log.resolve(&Latest), 3);
    let seq = |sequence, inclusive| Sequence {
        sequence,
        inclusive,
    };
    assert_eq!(log.resolve(&seq(1, true)), 1);
    assert_eq!(log.resolve(&seq(1, false)), 2);
    let offset = all[1].offset;
    assert_eq!(
        log.resolve(&Offset {
            offset,
            inclusive: true
        }),
        1
    );
    assert_eq!(
        log.resolve(&Offset {
            offset,
            inclusive: false
        }),
        2
    );
    let t = snap.last_enqueued_ms;
    let time = |millis, inclusive| EnqueuedTime { millis, inclusive };
    assert_eq!(log.resolve(&time(t - 1, false)), 0);
    assert_eq!(log.resolve(&time(t + 60_000, false)), 3);
}

#[test]
fn retention_by_count_drops_oldest() {
    let options = StorageOptions {
        retention_events: Some(2),
        ..memory()
    };
    let log = PartitionLog::open(None, options).unwrap();
    log.append(vec![event("a"), event("b"), event("c")])
        .unwrap();
    let snap = log.snapshot();
    assert_eq!((snap.begin_sequence, snap.last_sequence), (1, 2));
    assert_eq!(log.read_from(0, 10)[0].sequence, 1);
    assert_eq!(log.resolve(&StartPosition::Earliest), 1);
}

#[test]
fn retention_by_age_and_bytes() {
    let options = StorageOptions {
        retention_age: Some(Duration::from_millis(1)),
        ..memory()
    };
    let log = PartitionLog::open(None, options).unwrap();
    log.append(vec![event("old")]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    log.append(vec![event("new")]).unwrap();
    assert_eq!(sequences(&log.read_from(0, 10)), [1]);

    let options = StorageOptions {
        retention_bytes: Some(3 * (HEADER_LEN + 40)),
        ..memory()
    };
    let log = PartitionLog::open(None, options).unwrap();
    for i in 0..10 {
        log.append(vec![event(&format!("event-{i}"))]).unwrap();
    }
    let kept = log.read_from(0, 100);
    assert!(kept.len() <= 3 && !kept.is_empty(), "{}", kept.len());
    assert_eq!(kept.last().map(|e| e.sequence), Some(9));
}

#[test]
fn memory_budget_evicts_to_disk_or_drops() {
    let dir = tempfile::tempdir().unwrap();
    let budget = Arc::new(MemoryBudget::new(2_000));
    let options = StorageOptions {
        budget: budget.clone(),
        ..memory()
    };
    let on_disk = PartitionLog::open(Some(dir.path().join("0")), options.clone()).unwrap();
    for i in 0..100 {
        on_disk
            .append(vec![event(&format!("event-{i:03}"))])
            .unwrap();
    }
    assert!(budget.used() <= 2_000 + 200, "used {}", budget.used());
    // Everything is still readable: the old part comes from the segment file.
    let mut all = Vec::new();
    let mut next = 0;
    loop {
        let chunk = on_disk.read_from(next, 7);
        let Some(last) = chunk.last() else { break };
        next = last.sequence + 1;
        all.extend(chunk);
    }
    assert_eq!(sequences(&all), (0..100).collect::<Vec<_>>());
    assert_eq!(body_text(&all[3]), "event-003");
    drop(on_disk);
    assert_eq!(budget.used(), 0, "a dropped log releases its budget");

    let in_memory = PartitionLog::open(None, options).unwrap();
    for i in 0..100 {
        in_memory
            .append(vec![event(&format!("event-{i:03}"))])
            .unwrap();
    }
    let kept = in_memory.read_from(0, 1000);
    assert!(
        kept.len() < 100,
        "without a data dir the oldest are dropped"
    );
    assert_eq!(kept.last().map(|e| e.sequence), Some(99));
    assert_eq!(in_memory.snapshot().begin_sequence, kept[0].sequence);
}

#[test]
fn segments_roll_and_retention_removes_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0");
    let options = StorageOptions {
        segment_bytes: 4096,
        retention_events: Some(50),
        ..memory()
    };
    let log = PartitionLog::open(Some(path.clone()), options.clone()).unwrap();
    for i in 0..400 {
        log.append(vec![event(&format!("event-{i:04}"))]).unwrap();
    }
    let files = segment_files(&path);
    assert!(files.len() >= 2, "segments rolled: {files:?}");
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        on_disk < 3 * 4096 + 4096,
        "retention bounds the disk: {on_disk} bytes"
    );
    let before = log.snapshot();
    drop(log);
    let log = PartitionLog::open(Some(path), options).unwrap();
    assert!(
        log.lock().cache.is_empty(),
        "start-up reads no event into memory"
    );
    let after = log.snapshot();
    assert_eq!(before, after);
    // Old events come back from disk.
    assert_eq!(body_text(&log.read_from(0, 1)[0]), "event-0350");
    assert_eq!(after.last_sequence, 399);
    log.append(vec![event("next")]).unwrap();
    assert_eq!(log.snapshot().last_sequence, 400);
}

#[test]
fn interval_policy_syncs_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(20),
        ..memory()
    };
    let log = PartitionLog::open(Some(dir.path().join("0")), options).unwrap();
    log.append(vec![event("a")]).unwrap();
    log.append(vec![event("b")]).unwrap();
    assert!(
        log.lock().unsynced,
        "appends inside the interval are not synced"
    );
    std::thread::sleep(Duration::from_millis(30));
    log.sync_if_due();
    assert!(!log.lock().unsynced);
}

#[test]
fn torn_tail_is_cut_and_acknowledged_records_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0");
    let log = PartitionLog::open(Some(path.clone()), memory()).unwrap();
    log.append(vec![event("a"), event("b")]).unwrap();
    let before: Vec<_> = log
        .read_from(0, 10)
        .iter()
        .map(|e| (e.sequence, e.offset))
        .collect();
    drop(log);
    // A write cut short by a crash: half a record at the end.
    let mut partial = Vec::new();
    encode_record(&mut partial, 2, 0, &[7u8; 200]);
    let segment = segment_files(&path).pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&partial[..100]).unwrap();
    drop(file);
    let log = PartitionLog::open(Some(path.clone()), memory()).unwrap();
    let after: Vec<_> = log
        .read_from(0, 10)
        .iter()
        .map(|e| (e.sequence, e.offset))
        .collect();
    assert_eq!(before, after);
    log.append(vec![event("c")]).unwrap();
    drop(log);
    let log = PartitionLog::open(Some(path), memory()).unwrap();
    let events = log.read_from(0, 10);
    assert_eq!(sequences(&events), [0, 1, 2]);
    assert_eq!(body_text(&events[2]), "c");
}

#[test]
fn corruption_in_the_middle_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0");
    let log = PartitionLog::open(Some(path.clone()), memory()).unwrap();
    for i in 0..5 {
        log.append(vec![event(&format!("event-{i}"))]).unwrap();
    }
    let second = log.read_from(1, 1)[0].offset as usize;
    drop(log);
    let segment = segment_files(&path).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[second + HEADER_LEN as usize + 5] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let error = PartitionLog::open(Some(path), memory()).unwrap_err();
    assert!(
        matches!(error, EmulatorError::CorruptStore { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    // Nothing was truncated: the file is as it was.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
}

/// Measures what each fsync policy costs (single-event appends of 1 KiB,
/// the worst case for `always`). Run with
/// `cargo test -p evhub-emulator --release --lib fsync_policy_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check; prints appends/s per policy"]
fn fsync_policy_cost() {
    let payload = "x".repeat(1024);
    let mut rates = Vec::new();
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            fsync: policy,
            fsync_interval: Duration::from_millis(100),
            ..memory()
        };
        let log = PartitionLog::open(Some(dir.path().join("0")), options).unwrap();
        let count = if policy == FsyncPolicy::Always {
            500
        } else {
            5000
        };
        let started = Instant::now();
        for _ in 0..count {
            log.append(vec![event(&payload)]).unwrap();
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        rates.push((policy, rate));
    }
    let never = rates[2].1;
    for (policy, rate) in &rates {
        eprintln!(
            "fsync {policy:?}: {rate:.0} appends/s ({:.3} x never)",
            rate / never
        );
    }
}
