//! Produce and consume with a consumer group on the embedded memory backend.
//!
//! Run: `cargo run --example quickstart` (needs only the Rust toolchain).
//!
//! Shows the consumer loop that survives rebalances: members receive batches, acknowledge what
//! they processed in a [`CommitTracker`], and commit only gap-free checkpoints. When a member
//! joins or leaves, partitions move; a commit for a moved partition comes back as
//! `NotOwned` (counted, logged) and the loop simply goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use evhub::{CommitTracker, Consumer, ConsumerOptions, Event, Hub, HubOptions};

/// One member's loop: receive a batch, process it, commit what is safe; stop after `idle`
/// without events.
async fn run_member(
    name: &'static str,
    consumer: Arc<dyn Consumer>,
    idle: Duration,
) -> evhub::Result<Vec<(String, String)>> {
    let mut tracker = CommitTracker::new();
    let mut processed = Vec::new();
    loop {
        let batch = consumer.recv_batch(4, idle).await?;
        if batch.is_empty() {
            break;
        }
        tracker.received_batch(&batch);
        for event in &batch {
            let customer =
                String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned();
            processed.push((
                customer,
                String::from_utf8_lossy(&event.payload).into_owned(),
            ));
            tracker.ack(event); // processing succeeded; a failed event would block its partition
        }
        let summary = tracker.commit_ready(&*consumer).await?;
        if summary.not_owned > 0 {
            println!(
                "{name}: {} commit(s) skipped, partitions moved",
                summary.not_owned
            );
        }
        // Give the other member a chance to join while this one is busy.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{name} processed {} events", processed.len());
    consumer.close().await?;
    Ok(processed)
}

#[tokio::main]
async fn main() -> evhub::Result<()> {
    // Same code runs on Kafka or Event Hubs: only this URL changes.
    let hub = Hub::from_url("memory://").await?;
    println!("connected to the `{}` backend", hub.id());

    hub.create_hub("orders", HubOptions::with_partitions(4))
        .await?;
    println!("created hub `orders` with 4 partitions");

    let producer = hub.producer("orders").await?;
    let events: Vec<Event> = (1..=24)
        .map(|i| {
            Event::new(format!(r#"{{"order":{i},"amount":{}}}"#, i * 10))
                .with_key(format!("customer-{}", i % 3))
                .with_header("content-type", "application/json")
        })
        .collect();
    let deliveries = producer.send_batch(events).await?;
    println!("sent {} events, each acknowledged", deliveries.len());

    // `billing-a` starts alone and owns every partition; `billing-b` joins while `a` is busy,
    // so the group rebalances under a running loop.
    let idle = Duration::from_millis(300);
    let a = hub
        .consumer("orders", ConsumerOptions::new("billing"))
        .await?;
    let a = tokio::spawn(run_member("billing-a", a, idle));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = hub
        .consumer("orders", ConsumerOptions::new("billing"))
        .await?;
    let b = tokio::spawn(run_member("billing-b", b, idle));
    let mut per_customer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for member in [a, b] {
        let processed = member
            .await
            .map_err(|e| evhub::Error::new(evhub::ErrorKind::Other, e.to_string()))??;
        for (customer, order) in processed {
            per_customer.entry(customer).or_default().push(order);
        }
    }
    for (customer, orders) in &per_customer {
        println!("{customer}: {} events: {}", orders.len(), orders.join(" "));
    }
    println!(
        "commits skipped after rebalances in this process: {}",
        evhub::group::commits_skipped()
    );

    // A second group gets every event too (fan-out), independently of `billing`.
    let audit = hub
        .consumer("orders", ConsumerOptions::new("audit"))
        .await?;
    let mut audited = 0;
    loop {
        let batch = audit.recv_batch(100, Duration::from_millis(200)).await?;
        if batch.is_empty() {
            break;
        }
        audited += batch.len();
    }
    println!("the `audit` group received all {audited} events as well");
    audit.close().await?;
    producer.close().await?;
    println!("done");
    Ok(())
}
