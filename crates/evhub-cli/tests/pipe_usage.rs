//! `evhub pipe` / `evhub dlq` argument handling and a memory-backend run (no server needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_one_error_line, evhub, run};

#[test]
fn pipe_without_source_hub_is_a_usage_error() {
    let r = run(evhub().args([
        "pipe",
        "--from",
        "memory://",
        "--to",
        "memory://",
        "--group",
        "g",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = assert_one_error_line(&r, "usage");
    assert!(line.contains("--from-hub"), "{line}");
}

#[test]
fn pipe_with_bad_mapping_is_a_usage_error() {
    let r = run(evhub().args([
        "pipe",
        "--from",
        "memory://?hubs=a:1",
        "--from-hub",
        "a",
        "--to",
        "memory://",
        "--group",
        "g",
        "--map",
        "id=no-dot",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(assert_one_error_line(&r, "usage").contains("--map"));
}

#[test]
fn pipe_secrets_in_urls_are_not_printed() {
    let r = run(evhub().args([
        "pipe",
        "--from",
        "kafka://svc:hunter2secret@127.0.0.1:1/orders?request_timeout_ms=1000",
        "--to",
        "memory://",
        "--group",
        "g",
        "--idle",
        "1s",
    ]));
    assert_ne!(r.code, 0);
    assert!(
        !r.stderr.contains("hunter2secret") && !r.stdout.contains("hunter2secret"),
        "{}",
        r.stderr
    );
}

#[test]
fn pipe_on_memory_stops_when_idle_with_a_summary() {
    // Memory hubs live in the process: the source is empty, so the pipe idles out cleanly.
    let r = run(evhub().args([
        "pipe",
        "--from",
        "memory://?hubs=a:2,b:2",
        "--from-hub",
        "a",
        "--to",
        "memory://?hubs=b:2",
        "--to-hub",
        "b",
        "--group",
        "g",
        "--idle",
        "300ms",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["stopped"], "idle");
    assert_eq!(v["received"], 0);
    assert_eq!(v["pipe"], "a (memory) -> b (memory)");
}
