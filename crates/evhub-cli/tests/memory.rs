//! The CLI against the memory backend. Each process has its own memory hub, so round trips
//! through the hub are tested inside one process (`check`, `bench`); the Kafka tests do
//! produce → consume across processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_one_error_line, evhub, run};
use serde_json::Value;

#[test]
fn help_has_examples_and_exit_codes() {
    let r = run(evhub().arg("--help"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    assert!(r.stdout.contains("Exit codes:"), "{}", r.stdout);
    for cmd in ["produce", "consume", "hubs", "check", "bench"] {
        assert!(r.stdout.contains(cmd), "help lacks {cmd}");
        let sub = run(evhub().args([cmd, "--help"]));
        assert_eq!(sub.code, 0);
        assert!(
            sub.stdout.contains("Examples:"),
            "{cmd} --help: {}",
            sub.stdout
        );
    }
}

#[test]
fn check_on_memory_passes_every_case_and_prints_the_table() {
    let r = run(evhub().args(["--url", "memory://", "check"]));
    assert_eq!(r.code, 0, "stdout {} stderr {}", r.stdout, r.stderr);
    let header = r.stdout.lines().next().unwrap();
    for column in ["case", "result", "time", "skip reason"] {
        assert!(header.contains(column), "{header}");
    }
    let list = run(evhub().args(["check", "--list"]));
    let cases: Vec<&str> = list.stdout.lines().collect();
    assert!(cases.len() >= 19, "{cases:?}");
    for case in &cases {
        let row = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(case))
            .unwrap_or_else(|| panic!("no row for {case} in {}", r.stdout));
        assert!(row.contains(" passed "), "{row}");
    }
    assert!(
        r.stdout.contains(&format!(
            "{} cases on `memory`: {} passed, 0 skipped, 0 failed",
            cases.len(),
            cases.len()
        )),
        "{}",
        r.stdout
    );
}

#[test]
fn check_json_and_unknown_case() {
    let r = run(evhub().args([
        "--url",
        "memory://",
        "check",
        "--case",
        "round_trip",
        "--case",
        "batch_send",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["backend"], "memory");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["case"], "round_trip");
    assert_eq!(cases[0]["result"], "passed");
    assert!(cases[0]["seconds"].as_f64().unwrap() >= 0.0);

    let r = run(evhub().args(["--url", "memory://", "check", "--case", "no_such_case"]));
    assert_eq!(r.code, 2);
    let line = assert_one_error_line(&r, "usage");
    assert!(line.contains("no_such_case"), "{line}");
}

#[test]
fn bench_on_memory_reports_throughput_and_latency() {
    let r = run(evhub().args([
        "--url",
        "memory://",
        "bench",
        "--events",
        "3000",
        "--producers",
        "2",
        "--batch",
        "100",
        "--latency-events",
        "200",
        "--latency-rate",
        "5000",
        "--compare-raw",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["backend"], "memory");
    assert_eq!(v["workload"]["events"], 3000);
    assert_eq!(v["workload"]["producers"], 2);
    for metric in [
        "produce_events_per_s",
        "consume_events_per_s",
        "produce_mb_per_s",
    ] {
        assert!(v["evhub"][metric].as_f64().unwrap() > 0.0, "{metric}: {v}");
    }
    let p50 = v["evhub"]["latency_p50_ms"].as_f64().unwrap();
    let p99 = v["evhub"]["latency_p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} p99 {p99}");
    assert_eq!(v["runs"]["evhub"][0]["produce"]["events"], 3000);
    assert_eq!(v["runs"]["evhub"][0]["consume"]["events"], 2999);
    // No raw client for memory: said so, no ratios.
    assert!(v["raw"].is_null());
    assert!(v["ratio"].is_null());
    assert!(v["raw_skipped"].as_str().unwrap().contains("memory"), "{v}");

    let table = run(evhub().args([
        "--url",
        "memory://",
        "bench",
        "--events",
        "500",
        "--latency-events",
        "0",
    ]));
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains("produce events/s"),
        "{}",
        table.stdout
    );
    let latency_row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("latency p50 ms"))
        .unwrap();
    assert_eq!(
        latency_row.split_whitespace().last(),
        Some("-"),
        "{latency_row}"
    );
}

#[test]
fn hubs_show_and_create_on_memory() {
    let r = run(evhub().args([
        "--url",
        "memory://?hubs=orders:3",
        "hubs",
        "orders",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["name"], "orders");
    assert_eq!(v[0]["partition_count"], 3);
    assert_eq!(v[0]["partitions"][2]["end_offset"], 0);

    let r = run(evhub().args([
        "--url",
        "memory://",
        "hubs",
        "create",
        "fresh",
        "--partitions",
        "2",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("created hub `fresh` with 2 partitions"));

    let r = run(evhub().args(["--url", "memory://", "hubs", "missing"]));
    assert_eq!(r.code, 1);
    let line = assert_one_error_line(&r, "not found");
    assert!(line.contains("missing"), "{line}");
}

#[test]
fn produce_and_consume_on_memory_within_one_process() {
    let r = run(evhub()
        .args([
            "--url",
            "memory://?hubs=orders:2",
            "produce",
            "--hub",
            "orders",
        ])
        .args(["--key", "k", "--header", "a=b", "--print-delivery"])
        .write_stdin("one\ntwo\nthree\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("produced 3 events"), "{}", r.stderr);
    // Same key: one partition, consecutive offsets.
    let deliveries: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(deliveries.len(), 3, "{}", r.stdout);
    let partition = deliveries[0].split(' ').next().unwrap();
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(*d, format!("{partition} {i}"));
    }

    // A fresh process has an empty memory hub: --end returns at once, printing nothing.
    let r = run(evhub().args([
        "--url",
        "memory://?hubs=orders:2",
        "consume",
        "--hub",
        "orders",
        "--from",
        "earliest",
        "--end",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn config_errors_exit_2_with_one_line() {
    let r = run(evhub().args(["--url", "rabbit://host:5672", "hubs", "x"]));
    assert_eq!(r.code, 2);
    let line = assert_one_error_line(&r, "config");
    assert!(line.contains("rabbit"), "{line}");

    let r = run(evhub().args(["--url", "not-a-url", "hubs", "x"]));
    assert_eq!(r.code, 2);
    assert!(assert_one_error_line(&r, "config").contains("scheme"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evhub.toml");
    std::fs::write(
        &path,
        "backend = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\nusername = \"svc\"\npassword = \"Sup3r-Secret-pw\"\nlinger_ms = 5\n",
    )
    .unwrap();
    let r = run(evhub().arg("--config").arg(&path).args(["hubs", "x"]));
    assert_eq!(r.code, 2);
    let line = assert_one_error_line(&r, "config");
    assert!(line.contains("linger_ms"), "{line}");
    assert!(!r.stderr.contains("Sup3r-Secret-pw"), "{}", r.stderr);

    // No configuration at all.
    let r = run(evhub().args(["hubs", "x"]));
    assert_eq!(r.code, 2);
    assert!(assert_one_error_line(&r, "usage").contains("--url"));

    // Environment configuration works like --url.
    let r = run(evhub()
        .env("EVHUB_BACKEND", "memory")
        .env("EVHUB_MEMORY_HUBS", "envhub:2")
        .args(["hubs", "envhub", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"partition_count\": 2"), "{}", r.stdout);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["--url", "memory://", "consume", "--hub", "h", "--commit"],
        vec![
            "--url",
            "memory://",
            "consume",
            "--hub",
            "h",
            "--group",
            "g",
            "--from",
            "offset:3",
        ],
        vec![
            "--url",
            "memory://",
            "consume",
            "--hub",
            "h",
            "--from",
            "sometime",
        ],
        vec!["--url", "memory://", "produce"],
        vec!["--url", "memory://", "bench", "--size", "8"],
        vec!["--url", "memory://", "--bogus"],
    ] {
        let r = run(evhub().args(&args).write_stdin("x\n"));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_one_error_line(&r, "usage");
    }
}

#[test]
fn unknown_hub_is_a_runtime_error() {
    let r = run(evhub()
        .args(["--url", "memory://", "produce", "--hub", "nope"])
        .write_stdin("x\n"));
    assert_eq!(r.code, 1);
    assert!(assert_one_error_line(&r, "not found").contains("nope"));
}

#[test]
fn unreachable_broker_fails_fast_without_secrets() {
    let r = run(evhub().args([
        "--url",
        "kafka://svc:Top-Secret-99@127.0.0.1:1/orders?security_protocol=sasl_plaintext&request_timeout_ms=2000",
        "hubs",
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = assert_one_error_line(&r, "unavailable");
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(!r.stderr.contains("Top-Secret-99"), "{}", r.stderr);

    let key = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA==";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eh.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"backend":"eventhubs-kafka","request_timeout_ms":2000,"connection_string":"Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=send;SharedAccessKey={key};EntityPath=orders"}}"#
        ),
    )
    .unwrap();
    let r = run(evhub().arg("--config").arg(&path).args(["hubs"]));
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("evhub: error: "), "{}", r.stderr);
    assert!(!r.stderr.contains(key), "{}", r.stderr);
    assert!(!r.stderr.contains("SharedAccessKey="), "{}", r.stderr);
}

#[test]
fn ctrl_c_stops_consume_cleanly() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("evhub"))
        .args([
            "--url",
            "memory://?hubs=orders:2",
            "consume",
            "--hub",
            "orders",
            "--group",
            "g",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let out = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "consume did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Without the handler the process dies by the signal and has no exit code.
    assert_eq!(out.code(), Some(0), "{out:?}");
}
