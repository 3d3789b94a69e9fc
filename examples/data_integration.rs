//! Data integration with evhub pipelines: extract → transform → load into two destinations.
//!
//! Run: `cargo run --example data_integration --features data-integration`
//! (memory backend; `EVHUB_URL=kafka://127.0.0.1:9092` or `EVHUB_CONFIG=file.toml` for any
//! other backend; `-- --records N` for another input size).
//!
//! 1. **Extract**: records of a CSV file (generated into a temp directory) are published to
//!    the `raw` hub, keyed by customer, with their line number in a header.
//! 2. **Transform**: a pipeline (group `transform`) validates each record and enriches it
//!    (amount in EUR, size class, region) into JSON on the `clean` hub. Invalid records are
//!    rejected into the `dead-letter` hub, byte-exact with the reason in headers.
//! 3. **Load**: two independent consumer groups read the `clean` hub, each at its own pace:
//!    `load-sqlite` upserts into an SQLite table (idempotent, so redeliveries are harmless),
//!    `load-jsonl` appends JSON lines to a file, more slowly.
//!
//! Each stage commits a source checkpoint only after its work for that event is done, so a
//! crash at any point re-delivers, never loses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evhub::pipeline::dead_letter::{header_text, headers};
use evhub::pipeline::{handler_fn, Decision, Pipeline, ShutdownToken, Stats, StatsSnapshot};
use evhub::{
    Backend, ErrorKind, Event, Hub, HubOptions, ReaderOptions, ReceivedEvent, StartPosition,
};
use serde_json::json;

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> BoxResult<()> {
    let records = std::env::args()
        .skip_while(|a| a != "--records")
        .nth(1)
        .map(|n| n.parse::<usize>())
        .transpose()?
        .unwrap_or(1000);
    let configured = ["EVHUB_URL", "EVHUB_CONFIG", "EVHUB_BACKEND"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let hub = if configured {
        Hub::from_env().await?
    } else {
        Hub::from_url("memory://").await?
    };
    let backend = hub.backend();
    // Fresh names per run, so a persistent backend (Kafka) starts empty each time.
    let run = format!("{:x}", std::process::id());
    let (raw, clean, dead) = (
        format!("orders-raw-{run}"),
        format!("orders-clean-{run}"),
        format!("orders-dead-letter-{run}"),
    );
    for (name, partitions) in [(&raw, 4), (&clean, 4), (&dead, 1)] {
        match backend
            .create_hub(name, HubOptions::with_partitions(partitions))
            .await
        {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Err(format!(
                    "backend `{}` cannot create hubs; create {name}",
                    backend.id()
                )
                .into())
            }
            other => other?,
        }
    }
    let dir = std::env::temp_dir().join(format!("evhub-data-integration-{run}"));
    std::fs::create_dir_all(&dir)?;
    println!("backend: {}   files: {}", backend.id(), dir.display());

    // 1. Extract.
    let input = dir.join("orders.csv");
    write_sample_csv(&input, records)?;
    let extracted = extract(&backend, &input, &raw).await?;
    println!(
        "extract: {extracted} records from {} -> hub `{raw}`",
        input.display()
    );

    // 2. Transform: validate and enrich; bad records to the dead-letter hub.
    let transform = Pipeline::builder(backend.clone(), &raw, "transform")
        .handler(handler_fn(|event: ReceivedEvent| async move {
            Ok(transform_record(&event))
        }))
        .sink("clean", backend.producer(&clean).await?)
        .dead_letter(backend.producer(&dead).await?)
        .build()?;

    // 3. Load, twice, independently.
    let db_path = dir.join("orders.sqlite");
    let db = Arc::new(Mutex::new(open_db(&db_path)?));
    let to_sqlite = Pipeline::builder(backend.clone(), &clean, "load-sqlite")
        .handler(handler_fn(move |event: ReceivedEvent| {
            let db = db.clone();
            async move { upsert(&db, &event).map(|()| Decision::Done) }
        }))
        .build()?;
    let jsonl_path = dir.join("orders.jsonl");
    let jsonl = Arc::new(Mutex::new(std::fs::File::create(&jsonl_path)?));
    let to_jsonl = Pipeline::builder(backend.clone(), &clean, "load-jsonl")
        .handler(handler_fn(move |event: ReceivedEvent| {
            let file = jsonl.clone();
            async move {
                // A slower destination: it lags behind and catches up on its own.
                tokio::time::sleep(Duration::from_micros(500)).await;
                append_line(&file, &event).map(|()| Decision::Done)
            }
        }))
        .build()?;

    let stages = [
        ("transform", transform.stats()),
        ("load-sqlite", to_sqlite.stats()),
        ("load-jsonl", to_jsonl.stats()),
    ];
    let shutdown = ShutdownToken::new();
    let tasks = [
        tokio::spawn(transform.run(shutdown.clone())),
        tokio::spawn(to_sqlite.run(shutdown.clone())),
        tokio::spawn(to_jsonl.run(shutdown.clone())),
    ];
    let started = Instant::now();
    wait_until_loaded(&stages, extracted as u64, started).await?;
    shutdown.shutdown(); // drain, commit, leave the groups
    let mut summaries: Vec<StatsSnapshot> = Vec::new();
    for task in tasks {
        summaries.push(task.await??);
    }
    for ((name, _), s) in stages.iter().zip(&summaries) {
        println!(
            "{name:>11}: received {:>5}  handled {:>5}  produced {:>5}  dead-lettered {:>3}  commits {:>3}",
            s.received, s.handled, s.produced, s.dead_lettered, s.committed
        );
    }

    report(&backend, &dead, &db_path, &jsonl_path).await
}

/// Writes `n` order records, about 3% of them invalid in one of several ways.
fn write_sample_csv(path: &Path, n: usize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "order_id,customer,amount,currency")?;
    let currencies = ["EUR", "USD", "GBP"];
    for i in 0..n {
        let customer = format!("c{:03}", (i * 7) % 120);
        let amount = format!("{}.{:02}", 5 + (i * 37) % 900, i % 100);
        let currency = currencies[i % 3];
        let line = match i % 67 {
            11 => format!("o{i},{customer},-{amount},{currency}"), // negative amount
            23 => format!("o{i},,{amount},{currency}"),            // no customer
            41 => format!("o{i},{customer},12,5x,{currency}"),     // broken amount
            _ => format!("o{i},{customer},{amount},{currency}"),
        };
        writeln!(out, "{line}")?;
    }
    out.flush()
}

async fn extract(backend: &Arc<dyn Backend>, input: &Path, hub: &str) -> BoxResult<usize> {
    let producer = backend.producer(hub).await?;
    let text = std::fs::read_to_string(input)?;
    let mut batch = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate().skip(1) {
        let customer = line.split(',').nth(1).unwrap_or_default().to_owned();
        batch.push(
            Event::new(line.to_owned())
                .with_key(customer)
                .with_header("source", "orders.csv")
                .with_header("line", (n + 1).to_string()),
        );
        if batch.len() == 500 {
            count += batch.len();
            producer.send_batch(std::mem::take(&mut batch)).await?;
        }
    }
    count += batch.len();
    producer.send_batch(batch).await?;
    Ok(count)
}

/// Validates one CSV record and enriches it into JSON, or rejects it with the reason.
fn transform_record(event: &ReceivedEvent) -> Decision {
    let line = String::from_utf8_lossy(&event.payload);
    let fields: Vec<&str> = line.split(',').collect();
    let [order_id, customer, amount, currency] = fields[..] else {
        return Decision::dead_letter(format!("expected 4 fields, found {}", fields.len()));
    };
    if customer.is_empty() {
        return Decision::dead_letter("customer is missing");
    }
    let Ok(amount) = amount.parse::<f64>() else {
        return Decision::dead_letter(format!("amount `{amount}` is not a number"));
    };
    if amount <= 0.0 {
        return Decision::dead_letter(format!("amount {amount} is not positive"));
    }
    let rate = match currency {
        "EUR" => 1.0,
        "USD" => 0.92,
        "GBP" => 1.17,
        other => return Decision::dead_letter(format!("unknown currency `{other}`")),
    };
    let amount_eur = (amount * rate * 100.0).round() / 100.0;
    let number: u32 = customer.trim_start_matches('c').parse().unwrap_or(0);
    let record = json!({
        "order_id": order_id,
        "customer": customer,
        "amount": amount,
        "currency": currency,
        "amount_eur": amount_eur,
        "size": if amount_eur >= 500.0 { "large" } else { "small" },
        "region": REGIONS[(number % 4) as usize],
    });
    let mut out = event.to_event(); // key and headers (source, line, traceparent) carried on
    out.payload = record.to_string().into();
    Decision::forward(out.with_header("schema", "order.v1"))
}

fn open_db(path: &PathBuf) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS orders (
             order_id TEXT PRIMARY KEY, customer TEXT NOT NULL, amount_eur REAL NOT NULL,
             size TEXT NOT NULL, region TEXT NOT NULL, source_partition INTEGER NOT NULL,
             source_offset INTEGER NOT NULL)",
    )?;
    Ok(db)
}

fn load_error(what: &str, e: impl std::fmt::Display) -> evhub::Error {
    // A destination hiccup is worth retrying; the pipeline backs off and tries again.
    evhub::Error::new(ErrorKind::Unavailable, format!("{what}: {e}")).with_retriable(true)
}

fn upsert(db: &Mutex<rusqlite::Connection>, event: &ReceivedEvent) -> evhub::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(&event.payload)
        .map_err(|e| evhub::Error::invalid_input(format!("clean record is not JSON: {e}")))?;
    let db = db.lock().map_err(|e| load_error("sqlite lock", e))?;
    db.execute(
        "INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(order_id) DO UPDATE SET amount_eur = excluded.amount_eur",
        rusqlite::params![
            v["order_id"].as_str(),
            v["customer"].as_str(),
            v["amount_eur"].as_f64(),
            v["size"].as_str(),
            v["region"].as_str(),
            event.partition,
            event.offset
        ],
    )
    .map_err(|e| load_error("sqlite insert", e))?;
    Ok(())
}

fn append_line(file: &Mutex<std::fs::File>, event: &ReceivedEvent) -> evhub::Result<()> {
    let mut f = file.lock().map_err(|e| load_error("jsonl lock", e))?;
    f.write_all(&event.payload)
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| load_error("jsonl write", e))
}

/// Prints progress until the transform settled every record and both loaders caught up.
async fn wait_until_loaded(
    stages: &[(&str, Stats)],
    extracted: u64,
    started: Instant,
) -> BoxResult<()> {
    let mut last_print = Instant::now();
    loop {
        // Downstream first, so no loader count runs ahead of the transform count printed.
        let mut s: Vec<StatsSnapshot> = stages.iter().rev().map(|(_, s)| s.snapshot()).collect();
        s.reverse();
        let transformed = s[0].handled + s[0].dead_lettered;
        let clean = s[0].handled;
        let done = transformed >= extracted && s[1].handled >= clean && s[2].handled >= clean;
        if done || last_print.elapsed() >= Duration::from_millis(250) {
            last_print = Instant::now();
            println!(
                "  {:>5.2}s  transformed {transformed:>5}/{extracted}  sqlite {:>5}/{clean}  jsonl {:>5}/{clean}",
                started.elapsed().as_secs_f64(),
                s[1].handled,
                s[2].handled
            );
        }
        if done {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("pipelines did not finish within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn report(
    backend: &Arc<dyn Backend>,
    dead: &str,
    db_path: &Path,
    jsonl_path: &Path,
) -> BoxResult<()> {
    let db = rusqlite::Connection::open(db_path)?;
    let mut by_region = db.prepare(
        "SELECT region, count(*), round(sum(amount_eur), 2) FROM orders GROUP BY region ORDER BY region",
    )?;
    let rows = by_region.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, f64>(2)?,
        ))
    })?;
    println!("sqlite {}:", db_path.display());
    for row in rows {
        let (region, n, total) = row?;
        println!("  {region:<6} {n:>4} orders  {total:>10.2} EUR");
    }
    let lines = std::fs::read_to_string(jsonl_path)?.lines().count();
    println!("jsonl  {}: {lines} lines", jsonl_path.display());

    // The dead-letter hub: original record byte-exact, reason in headers.
    let reader = backend
        .partition_reader(dead, ReaderOptions::new(0, StartPosition::Earliest))
        .await?;
    let end = backend.partition_properties(dead, 0).await?.end_offset;
    let mut letters = Vec::new();
    while (letters.len() as i64) < end {
        letters.extend(reader.recv_batch(100, Duration::from_secs(5)).await?);
    }
    println!("dead-letter hub `{dead}`: {} records", letters.len());
    for e in letters.iter().take(3) {
        println!(
            "  line {:>4}  {:<28} {}: {}",
            header_text(&e.headers, "line").unwrap_or_default(),
            String::from_utf8_lossy(&e.payload),
            header_text(&e.headers, headers::REASON).unwrap_or_default(),
            header_text(&e.headers, headers::ERROR_MESSAGE).unwrap_or_default(),
        );
    }
    Ok(())
}
