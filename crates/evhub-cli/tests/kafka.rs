//! The CLI against the local Apache Kafka broker (`scripts/kafka.sh start`, then
//! `eval "$(scripts/kafka.sh env)"`). Without `EVHUB_TEST_KAFKA_BOOTSTRAP` every test prints a
//! skip line and returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{assert_one_error_line, evhub, run, unique};
use serde_json::Value;

fn broker_url() -> Option<String> {
    match std::env::var("EVHUB_TEST_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(format!("kafka://{b}")),
        _ => {
            eprintln!("SKIPPED: EVHUB_TEST_KAFKA_BOOTSTRAP is not set (scripts/kafka.sh start)");
            None
        }
    }
}

fn create(url: &str, hub: &str, partitions: u32) {
    let r = run(evhub()
        .args(["--url", url, "hubs", "create", hub, "--partitions"])
        .arg(partitions.to_string()));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn produce_then_consume_round_trip_with_keys_and_headers() {
    let Some(url) = broker_url() else { return };
    let hub = unique("cli-rt");
    create(&url, &hub, 3);

    let r = run(evhub()
        .args([
            "--url",
            &url,
            "--hub",
            &hub,
            "produce",
            "--key",
            "customer-7",
        ])
        .args([
            "--header",
            "source=cli",
            "--header",
            "trace=a=b",
            "--batch",
            "2",
        ])
        .write_stdin("first\nsecond\nthird\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("produced 3 events"), "{}", r.stderr);
    // Per-line keys, and a payload that is not UTF-8.
    let mut input = b"k1:alpha\nk2:beta\nk1:".to_vec();
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let r = run(evhub()
        .args([
            "--url",
            &format!("{url}/{hub}"),
            "produce",
            "--key-separator",
            ":",
        ])
        .write_stdin(input));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = run(evhub().args([
        "--url",
        &url,
        "--hub",
        &hub,
        "consume",
        "--from",
        "earliest",
        "--end",
        "--format",
        "json",
        "--timeout",
        "60s",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events = json_lines(&r.stdout);
    assert_eq!(events.len(), 6, "{}", r.stdout);
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["hub"], hub.as_str());
        assert!(e["partition"].as_u64().unwrap() < 3);
        assert!(e["offset"].as_i64().unwrap() >= 0);
        let t = e["time"].as_str().unwrap();
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        assert_eq!(e["key_encoding"], "utf8");
        by_key
            .entry(e["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    let customer = &by_key["customer-7"];
    let payloads: Vec<&str> = customer
        .iter()
        .map(|e| e["payload"].as_str().unwrap())
        .collect();
    assert_eq!(
        payloads,
        ["first", "second", "third"],
        "same key keeps order"
    );
    assert!(customer
        .iter()
        .all(|e| e["partition"] == customer[0]["partition"]));
    for e in customer {
        let headers = e["headers"].as_array().unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0]["name"], "source");
        assert_eq!(headers[0]["value"], "cli");
        assert_eq!(headers[1]["name"], "trace");
        assert_eq!(headers[1]["value"], "a=b");
        assert_eq!(headers[1]["encoding"], "utf8");
    }
    let k1 = &by_key["k1"];
    assert_eq!(k1.len(), 2);
    assert_eq!(k1[0]["payload"], "alpha");
    assert_eq!(k1[0]["payload_encoding"], "utf8");
    assert_eq!(k1[1]["payload"], "//4=");
    assert_eq!(k1[1]["payload_encoding"], "base64");
    assert_eq!(k1[0]["headers"].as_array().unwrap().len(), 0);
    assert_eq!(by_key["k2"][0]["payload"], "beta");

    // Raw format, one partition, from an offset.
    let p = customer[0]["partition"].as_u64().unwrap().to_string();
    let first_offset = customer[1]["offset"].as_i64().unwrap();
    let r = run(evhub()
        .args(["--url", &url, "--hub", &hub, "consume", "--partition", &p])
        .arg("--from")
        .arg(format!("offset:{first_offset}"))
        .args(["--count", "2", "--timeout", "60s"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&lines[..2], ["second", "third"], "{}", r.stdout);

    // Metadata agrees.
    let r = run(evhub().args(["--url", &url, "hubs", &hub, "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["partition_count"], 3);
    let total: u64 = v[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6);
}

#[test]
fn group_consume_commits_what_it_printed() {
    let Some(url) = broker_url() else { return };
    let hub = unique("cli-group");
    create(&url, &hub, 2);
    let r = run(evhub()
        .args(["--url", &url, "--hub", &hub, "produce"])
        .write_stdin("1\n2\n3\n4\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let group = unique("g");
    let consume = |count: &str, timeout: &str| {
        run(evhub().args([
            "--url",
            &url,
            "--hub",
            &hub,
            "consume",
            "--group",
            &group,
            "--commit",
            "--count",
            count,
            "--timeout",
            timeout,
        ]))
    };
    let r = consume("4", "60s");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut got: Vec<&str> = r.stdout.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["1", "2", "3", "4"]);

    // Everything was committed: the group has nothing left.
    let r = consume("1", "8s");
    assert_eq!(r.code, 1, "{}", r.stdout);
    let line = assert_one_error_line(&r, "timeout");
    assert!(line.contains("received 0 of 1"), "{line}");

    // A new event reaches the group, and without --commit it stays uncommitted.
    let r = run(evhub()
        .args(["--url", &url, "--hub", &hub, "produce"])
        .write_stdin("5\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for _ in 0..2 {
        let r = run(evhub().args([
            "--url",
            &url,
            "--hub",
            &hub,
            "consume",
            "--group",
            &group,
            "--count",
            "1",
            "--timeout",
            "60s",
        ]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "5\n");
    }
}

#[test]
fn check_and_bench_against_the_broker() {
    let Some(url) = broker_url() else { return };
    let r = run(evhub().args([
        "--url",
        &url,
        "check",
        "--case",
        "round_trip",
        "--case",
        "headers_and_key_byte_exact",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("2 cases on `kafka`: 2 passed"),
        "{}",
        r.stdout
    );

    let r = run(evhub().args([
        "--url",
        &url,
        "bench",
        "--events",
        "2000",
        "--batch",
        "200",
        "--partitions",
        "2",
        "--latency-events",
        "100",
        "--compare-raw",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["backend"], "kafka");
    for side in ["evhub", "raw"] {
        for metric in [
            "produce_events_per_s",
            "consume_events_per_s",
            "latency_p99_ms",
        ] {
            assert!(
                v[side][metric].as_f64().unwrap() > 0.0,
                "{side} {metric}: {v}"
            );
        }
        assert_eq!(v["runs"][side][0]["produce"]["events"], 2000);
    }
    let ratio = v["ratio"]["produce_events_per_s"].as_f64().unwrap();
    assert!(ratio > 0.0, "{v}");
    assert!(v["raw_client"].as_str().unwrap().contains("rdkafka"));
}
