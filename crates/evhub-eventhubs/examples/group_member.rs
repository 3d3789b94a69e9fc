//! One consumer-group member of the `eventhubs` backend that commits every event it prints:
//! the evhub side of the interop tests with Microsoft's processors
//! (`tests/eventhubs_interop`).
//!
//! ```text
//! cargo run -p evhub-eventhubs --example group_member -- CONFIG.toml HUB GROUP [COUNT]
//! ```
//!
//! Prints `ready` once it owns a partition or after 10 s, then one JSON line per event
//! (`{"partition":..,"sequence":..,"payload":..}`), committing each event's checkpoint after
//! printing it. Stops after `COUNT` events, or on SIGTERM/SIGINT: it then closes the member
//! (commits are synchronous, so everything printed is committed) and exits 0.

use std::io::Write;
use std::time::{Duration, Instant};

use evhub_core::config::Config;
use evhub_core::{Backend, ConsumerOptions, Error, Result};
use evhub_eventhubs::EventHubsBackend;

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    if let Err(e) = run().await {
        eprintln!("group_member: error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, hub, group, rest @ ..] = args.as_slice() else {
        return Err(Error::invalid_input(
            "usage: group_member CONFIG.toml HUB GROUP [COUNT]",
        ));
    };
    let count: Option<usize> = match rest.first() {
        None => None,
        Some(n) => Some(
            n.parse()
                .map_err(|_| Error::invalid_input(format!("COUNT `{n}` is not a number")))?,
        ),
    };
    let Config::EventHubs(config) = Config::from_file(config)? else {
        return Err(Error::config("group_member needs backend = \"eventhubs\""));
    };
    let backend = EventHubsBackend::connect(&config).await?;
    let consumer = backend.consumer(hub, ConsumerOptions::new(group)).await?;
    let started = Instant::now();
    while consumer.assignment().await?.is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("ready");
    let mut out = std::io::stdout();
    let _ = out.flush();
    let mut printed = 0usize;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::new(evhub_core::ErrorKind::Other, format!("signal: {e}")))?;
    loop {
        if count.is_some_and(|n| printed >= n) {
            break;
        }
        let batch = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            batch = consumer.recv_batch(100, Duration::from_millis(200)) => batch?,
        };
        for event in &batch {
            let line = serde_json::json!({
                "partition": event.partition,
                "sequence": event.offset,
                "payload": String::from_utf8_lossy(&event.payload),
            });
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            printed += 1;
            consumer.commit(&event.checkpoint()).await?;
        }
    }
    consumer.close().await?;
    eprintln!("group_member: {printed} events, closed");
    Ok(())
}
