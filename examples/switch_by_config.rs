//! The same service code on any backend, chosen only by configuration.
//!
//! ```text
//! cargo run --example switch_by_config                                  # memory://
//! cargo run --example switch_by_config -- examples/config/memory.toml
//! EVHUB_URL=kafka://127.0.0.1:9092 cargo run --example switch_by_config
//! cargo run --example switch_by_config -- examples/config/eventhubs.toml
//! ```
//!
//! The service publishes a few events, then consumes them with a consumer group, committing
//! only what it processed (gap-free, with `CommitTracker`).

use std::time::Duration;

use evhub::{CommitTracker, Config, ConsumerOptions, Event, Hub, HubOptions, InitialPosition};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> evhub::Result<()> {
    let config = match std::env::args().nth(1) {
        Some(path) => Config::from_file(path)?,
        None if has_env_config() => Config::from_env()?,
        None => Config::from_url("memory://")?,
    };
    let hub = Hub::connect(&config).await?;
    let name = hub.default_hub().unwrap_or("switch-by-config").to_owned();
    println!("backend `{}`, hub `{name}`", hub.id());
    if hub.capabilities().create_hub {
        hub.create_hub(&name, HubOptions::with_partitions(2))
            .await?;
    }
    service(&hub, &name).await
}

/// The service: nothing here knows which backend it runs on.
async fn service(hub: &Hub, name: &str) -> evhub::Result<()> {
    let run_id = std::process::id();
    let producer = hub.producer(name).await?;
    let events = (0..5)
        .map(|i| Event::new(format!("run {run_id} event {i}")).with_key(format!("run-{run_id}")))
        .collect();
    producer.send_batch(events).await?;
    println!("published 5 events");

    let options = ConsumerOptions::new("$Default").with_initial_position(InitialPosition::Earliest);
    let consumer = hub.consumer(name, options).await?;
    let mut tracker = CommitTracker::new();
    let mut mine = 0;
    while mine < 5 {
        let event = match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(event) => event?,
            Err(_) => return Err(evhub::Error::timeout("waiting for this run's events")),
        };
        tracker.received(&event);
        let text = String::from_utf8_lossy(&event.payload).into_owned();
        if text.starts_with(&format!("run {run_id} ")) {
            mine += 1;
            println!(
                "partition {} offset {}: {text}",
                event.partition, event.offset
            );
        }
        tracker.ack(&event);
    }
    // NotOwned (a rebalance moved a partition) is an outcome, not an error: the loop goes on.
    tracker.commit_ready(&*consumer).await?;
    consumer.close().await?;
    producer.close().await?;
    println!("consumed and committed this run's 5 events");
    Ok(())
}

fn has_env_config() -> bool {
    ["EVHUB_CONFIG", "EVHUB_URL", "EVHUB_BACKEND"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}
