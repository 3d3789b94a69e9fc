//! Event Hubs drill: the native `eventhubs` backend against the evhub-emulator *process* with
//! `--data-dir`; the emulator is SIGKILLed mid-stream and restarted on the same data dir and
//! port. Checkpoints live in a local directory (file://).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evhub::config::EventHubsConfig;
use evhub::{Backend, CommitTracker, Config, Consumer, ConsumerOptions, Event};
use evhub_drills::azurite::Azurite;
use evhub_drills::{
    free_port, recovery_after, skip, workspace_bin, ChildGuard, DrillReport, Processed, Tally,
};

const KEY_NAME: &str = "RootManageSharedAccessKey";
// A drill-only key (base64, as Azure issues them); the emulator listens on 127.0.0.1 only.
const KEY: &str = "ZXZodWItZHJpbGwta2V5LW5vdC1hLXNlY3JldA==";

fn start_emulator(port: u16, data: &std::path::Path) -> ChildGuard {
    let bin = workspace_bin("evhub-emulator").expect("emulator binary");
    let mut child = ChildGuard::spawn(
        Command::new(bin)
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(data)
            .args(["--key", &format!("{KEY_NAME}={KEY}"), "--hub", "drill:4"])
            .args(["--log", "warn"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.running(), "emulator exited during start-up");
        assert!(
            Instant::now() < deadline,
            "emulator did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

async fn member(
    consumer: Arc<dyn Consumer>,
    log: Arc<Mutex<Vec<Processed>>>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> evhub::Result<()> {
    let mut tracker = CommitTracker::new();
    while !stop.load(Ordering::Relaxed) {
        let batch = match consumer.recv_batch(100, Duration::from_millis(200)).await {
            Ok(batch) => batch,
            // The server is down: a loop keeps trying, as a service would.
            Err(e) if e.is_retriable() => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        tracker.received_batch(&batch);
        for event in &batch {
            log.lock().unwrap().push(Processed {
                at: Instant::now(),
                partition: event.partition,
                id: String::from_utf8_lossy(&event.payload).into_owned(),
            });
            tracker.ack(event);
        }
        if let Err(e) = tracker.commit_ready(&*consumer).await {
            if !e.is_retriable() {
                return Err(e);
            }
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    consumer.close().await
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventhubs_emulator_killed_mid_stream_file_checkpoints() {
    let _serial = SERIAL.lock().await;
    emulator_kill_drill("eventhubs-emulator-kill-file-checkpoints", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventhubs_emulator_killed_mid_stream_azurite_checkpoints() {
    let name = "eventhubs-emulator-kill-azurite-checkpoints";
    let Some(azurite) = Azurite::from_env() else {
        skip(
            name,
            "EVHUB_TEST_AZURITE_* are not set (scripts/azurite.sh start; eval \"$(scripts/azurite.sh env)\")",
        );
        return;
    };
    let _serial = SERIAL.lock().await;
    let container = evhub_drills::unique("checkpoints");
    azurite.create_container(&container).unwrap();
    emulator_kill_drill(name, Some((format!("az://{container}/drill"), azurite))).await;
}

/// The drill; checkpoints in `azure` (an `az://` URL on Azurite) or else a local directory.
async fn emulator_kill_drill(name: &str, azure: Option<(String, Azurite)>) {
    if workspace_bin("evhub-emulator").is_none() {
        skip(
            name,
            "the evhub-emulator binary is not built (run through cargo test --workspace)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let port = free_port().unwrap();
    let mut emulator = start_emulator(port, &data);
    let cs = format!(
        "Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};EntityPath=drill;UseDevelopmentEmulator=true"
    );
    let mut config = EventHubsConfig::from_connection_string(cs.parse().unwrap());
    match azure {
        Some((url, azurite)) => {
            config.checkpoint_store = Some(url);
            config.checkpoint_store_options = azurite.store_options();
        }
        None => config.checkpoint_store = Some(format!("file://{}", checkpoints.display())),
    }
    config.operation_timeout_ms = 10_000;
    let config = Config::EventHubs(config);
    let backend: Arc<dyn Backend> = evhub::connect(&config).await.unwrap();
    let log: Arc<Mutex<Vec<Processed>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut members = Vec::new();
    for _ in 0..2 {
        let b = evhub::connect(&config).await.unwrap();
        let c = b
            .consumer("drill", ConsumerOptions::new("$Default"))
            .await
            .unwrap();
        members.push(tokio::spawn(member(
            c,
            log.clone(),
            stop.clone(),
            errors.clone(),
        )));
    }
    let producer = backend.producer("drill").await.unwrap();
    let started = Instant::now();
    let mut produced_at = HashMap::new();
    let mut acknowledged = Vec::new();
    let mut fault = None;
    let mut send_retries = 0;
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(25) {
        let ids: Vec<(String, u32)> = (i..i + 40)
            .map(|n| (format!("h{n}"), (n % 4) as u32))
            .collect();
        i += 40;
        let events: Vec<Event> = ids
            .iter()
            .map(|(id, p)| Event::new(id.clone()).with_partition(*p))
            .collect();
        // A send that fails while the server is down is sent again (at-least-once).
        loop {
            match producer.send_batch(events.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        e.is_retriable() || started.elapsed() < Duration::from_secs(60),
                        "send: {e}"
                    );
                    send_retries += 1;
                    assert!(send_retries < 400, "producer never recovered: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        let sent = Instant::now();
        for (id, p) in ids {
            produced_at.insert(id.clone(), (sent, p));
            acknowledged.push(id);
        }
        if fault.is_none() && started.elapsed() > Duration::from_secs(8) {
            emulator.kill9();
            fault = Some(Instant::now());
            std::thread::sleep(Duration::from_secs(1));
            emulator = start_emulator(port, &data);
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
        assert!(
            members.iter().all(|m| !m.is_finished()),
            "a member loop ended during the drill"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut member_results = Vec::new();
    for m in members {
        member_results.push(tokio::time::timeout(Duration::from_secs(30), m).await);
    }
    let processed = log.lock().unwrap().clone();
    let mut tally = Tally::default();
    processed.iter().for_each(|p| tally.record(p.id.clone()));
    let fault = fault.expect("the emulator was killed");
    let recovery = recovery_after(fault, &processed, &produced_at);
    let report = DrillReport::new(
        name,
        &acknowledged,
        &tally,
        recovery.unwrap_or(Duration::MAX),
    );
    report.print();
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "drill {name}: send retries={send_retries} consumer retriable errors={}\n",
            errors.load(Ordering::Relaxed)
        )
        .as_bytes(),
    );
    for r in member_results {
        let r = r.expect("member closed within 30 s").expect("member task");
        r.expect("member loop ended with an error");
    }
    assert_eq!(
        report.lost, 0,
        "{} acknowledged events never processed",
        report.lost
    );
    assert!(recovery.is_some(), "a partition was never served again");
    assert!(
        report.duplicates <= acknowledged.len() as u64 / 4,
        "{} duplicates",
        report.duplicates
    );
}
