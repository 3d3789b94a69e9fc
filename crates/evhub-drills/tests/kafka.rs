//! Kafka drills on the real local broker (scripts/kafka.sh): the broker is SIGKILLed and
//! resumed on its data dir, a consumer-group member process is SIGKILLed.
//!
//! The drills kill the shared broker, so they run one at a time (a process-wide lock), and
//! they leave it running again. Other test binaries never run at the same time as this one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evhub::config::KafkaConfig;
use evhub::{Backend, Config, Event, HubOptions, ReaderOptions, StartPosition};
use evhub_drills::{
    kafka_control, recovery_after, skip, unique, workspace_bin, ChildGuard, DrillReport, Processed,
    Tally,
};

static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bootstrap(drill: &str) -> Option<String> {
    let bootstrap = std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP").ok();
    let control = std::env::var("EVHUB_TEST_KAFKA_CONTROL").ok();
    match (bootstrap, control) {
        (Some(b), Some(_)) => Some(b),
        _ => {
            skip(
                drill,
                "EVHUB_TEST_KAFKA_BOOTSTRAP / EVHUB_TEST_KAFKA_CONTROL are not set \
                 (scripts/kafka.sh start; eval \"$(scripts/kafka.sh env)\")",
            );
            None
        }
    }
}

async fn connect(bootstrap: &str) -> Arc<dyn Backend> {
    let mut config = KafkaConfig::new(bootstrap);
    // Long enough to ride through the broker's restart inside librdkafka's retries.
    config.request_timeout_ms = 120_000;
    config.idempotence = true;
    evhub::connect(&Config::Kafka(config)).await.unwrap()
}

/// Kills the broker, waits `down`, resumes it on the same data dir (off the async runtime).
async fn bounce_broker(down: Duration) -> Instant {
    let killed = tokio::task::spawn_blocking(|| kafka_control("kill"))
        .await
        .unwrap();
    killed.unwrap();
    let at = Instant::now();
    tokio::time::sleep(down).await;
    tokio::task::spawn_blocking(|| kafka_control("resume"))
        .await
        .unwrap()
        .unwrap();
    at
}

/// Reads every partition from the start to its end offset and tallies payloads.
async fn read_all(backend: &dyn Backend, hub: &str, partitions: u32) -> Tally {
    let mut tally = Tally::default();
    for p in 0..partitions {
        let end = backend
            .partition_properties(hub, p)
            .await
            .unwrap()
            .end_offset;
        let reader = backend
            .partition_reader(hub, ReaderOptions::new(p, StartPosition::Earliest))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 0;
        while next < end && Instant::now() < deadline {
            for e in reader
                .recv_batch(1000, Duration::from_millis(500))
                .await
                .unwrap()
            {
                next = e.offset + 1;
                tally.record(String::from_utf8_lossy(&e.payload).into_owned());
            }
        }
        reader.close().await.unwrap();
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_producer_rides_through_broker_kill() {
    let name = "kafka-producer-broker-kill";
    let Some(bootstrap) = bootstrap(name) else {
        return;
    };
    let _serial = BROKER.lock().await;
    let backend = connect(&bootstrap).await;
    let hub = unique("producer");
    backend
        .create_hub(&hub, HubOptions::with_partitions(3))
        .await
        .unwrap();
    let producer = backend.producer(&hub).await.unwrap();
    let total = 30_000usize;
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let send = {
        let acked = acked.clone();
        async move {
            let mut acknowledged = Vec::with_capacity(total);
            let mut first_ack_after: Vec<Instant> = Vec::new();
            for chunk in 0..total / 250 {
                let ids: Vec<String> = (chunk * 250..(chunk + 1) * 250)
                    .map(|i| format!("p{i}"))
                    .collect();
                let events = ids
                    .iter()
                    .map(|id| Event::new(id.clone()).with_key(id.clone()))
                    .collect();
                producer.send_batch(events).await.unwrap();
                first_ack_after.push(Instant::now());
                acknowledged.extend(ids);
                acked.store(acknowledged.len(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer.close().await.unwrap();
            (acknowledged, first_ack_after)
        }
    };
    let fault = async {
        while acked.load(std::sync::atomic::Ordering::Relaxed) < total / 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bounce_broker(Duration::from_secs(2)).await
    };
    let ((acknowledged, ack_times), killed_at) =
        tokio::time::timeout(Duration::from_secs(240), async {
            tokio::join!(send, fault)
        })
        .await
        .expect("drill bounded at 240 s");
    let recovery = ack_times
        .iter()
        .find(|t| **t > killed_at)
        .map_or(Duration::MAX, |t| t.duration_since(killed_at));
    let verify = connect(&bootstrap).await;
    let tally = read_all(&*verify, &hub, 3).await;
    let report = DrillReport::new(name, &acknowledged, &tally, recovery);
    report.print();
    assert_eq!(
        report.lost, 0,
        "acknowledged events lost across the broker kill"
    );
    assert_eq!(
        report.duplicates, 0,
        "the idempotent producer stored duplicates"
    );
    assert_eq!(tally.distinct(), total);
}

/// `evhub consume --group --commit` as a real process; its JSON lines tell what it processed.
fn spawn_member(
    config: &std::path::Path,
    hub: &str,
    group: &str,
    log: Arc<Mutex<Vec<Processed>>>,
) -> ChildGuard {
    let bin = workspace_bin("evhub").expect("the evhub binary is built by cargo test --workspace");
    let mut child = ChildGuard::spawn(
        Command::new(bin)
            .arg("--config")
            .arg(config)
            .args([
                "--hub", hub, "consume", "--group", group, "--commit", "--format", "json",
            ])
            .env("RUST_LOG", "error")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let stdout = child.0.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let (Some(p), Some(id)) = (v["partition"].as_u64(), v["payload"].as_str()) else {
                continue;
            };
            log.lock().unwrap().push(Processed {
                at: Instant::now(),
                partition: p as u32,
                id: id.to_owned(),
            });
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_survives_member_and_broker_kill() {
    let name = "kafka-group-member-and-broker-kill";
    let Some(bootstrap) = bootstrap(name) else {
        return;
    };
    if workspace_bin("evhub").is_none() {
        skip(
            name,
            "the evhub binary is not built (run through cargo test --workspace)",
        );
        return;
    }
    let _serial = BROKER.lock().await;
    let backend = connect(&bootstrap).await;
    let hub = unique("group");
    let partitions = 6u32;
    backend
        .create_hub(&hub, HubOptions::with_partitions(partitions))
        .await
        .unwrap();
    let session_timeout = Duration::from_secs(6);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("member.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\nsession_timeout_ms = {}\n",
            session_timeout.as_millis()
        ),
    )
    .unwrap();
    let log: Arc<Mutex<Vec<Processed>>> = Arc::default();
    let mut members: Vec<ChildGuard> = (0..3)
        .map(|_| spawn_member(&config, &hub, "drill-group", log.clone()))
        .collect();
    let producer = backend.producer(&hub).await.unwrap();
    let started = Instant::now();
    let mut produced_at = HashMap::new();
    let mut acknowledged = Vec::new();
    let mut member_killed = None;
    let mut broker_killed = None;
    let mut i = 0usize;
    // ~40 s of production at ~600 events/s to every partition; a member dies at 8 s, the
    // broker at 20 s.
    while started.elapsed() < Duration::from_secs(40) {
        let ids: Vec<(String, u32)> = (i..i + 60)
            .map(|n| (format!("g{n}"), (n % 6) as u32))
            .collect();
        i += 60;
        let events = ids
            .iter()
            .map(|(id, p)| Event::new(id.clone()).with_partition(*p))
            .collect();
        let sent = Instant::now();
        producer.send_batch(events).await.unwrap();
        for (id, p) in ids {
            produced_at.insert(id.clone(), (sent, p));
            acknowledged.push(id);
        }
        if member_killed.is_none() && started.elapsed() > Duration::from_secs(8) {
            members[2].kill9();
            member_killed = Some(Instant::now());
        }
        if broker_killed.is_none() && started.elapsed() > Duration::from_secs(20) {
            broker_killed = Some(bounce_broker(Duration::from_secs(2)).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tally = Tally::default();
        log.lock()
            .unwrap()
            .iter()
            .for_each(|p| tally.record(p.id.clone()));
        if tally.missing(&acknowledged).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let survivors_running = members[..2].iter_mut().all(|m| m.running());
    let processed = log.lock().unwrap().clone();
    let mut tally = Tally::default();
    processed.iter().for_each(|p| tally.record(p.id.clone()));
    let recoveries: Vec<Option<Duration>> = [member_killed, broker_killed]
        .into_iter()
        .flatten()
        .map(|f| recovery_after(f, &processed, &produced_at))
        .collect();
    let recovery = recoveries
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or(Duration::MAX);
    let report = DrillReport::new(name, &acknowledged, &tally, recovery);
    report.print();
    // The survivors leave the group cleanly on Ctrl-C.
    for m in &mut members[..2] {
        let _ = m.signal("INT");
    }
    let exits: Vec<Option<i32>> = members[..2]
        .iter_mut()
        .map(|m| m.wait_timeout(Duration::from_secs(30)))
        .collect();
    assert!(
        survivors_running,
        "a surviving member exited during the drill"
    );
    assert_eq!(
        report.lost,
        0,
        "events never processed: {:?}",
        tally.missing(&acknowledged).len()
    );
    assert!(
        recoveries.iter().all(Option::is_some),
        "a partition was never served again after a fault: {recoveries:?}"
    );
    assert!(
        recovery <= session_timeout + Duration::from_secs(15),
        "partitions served again only after {recovery:?}"
    );
    assert!(
        report.duplicates <= acknowledged.len() as u64 / 4,
        "{} duplicates of {} events",
        report.duplicates,
        acknowledged.len()
    );
    assert_eq!(exits, vec![Some(0), Some(0)], "survivors exit 0 on Ctrl-C");
}
