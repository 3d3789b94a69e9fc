//! Produce and consume with a consumer group on the embedded memory backend.
//!
//! Run: `cargo run --example quickstart`

use std::collections::BTreeMap;
use std::time::Duration;

use evhub::{CommitTracker, ConsumerOptions, Event, Hub, HubOptions};

#[tokio::main]
async fn main() -> evhub::Result<()> {
    // Same code runs on Kafka or Event Hubs: only this URL changes.
    let hub = Hub::from_url("memory://").await?;
    println!("connected to the `{}` backend", hub.id());

    hub.create_hub("orders", HubOptions::with_partitions(4))
        .await?;
    println!("created hub `orders` with 4 partitions");

    let producer = hub.producer("orders").await?;
    let events: Vec<Event> = (1..=12)
        .map(|i| {
            Event::new(format!(r#"{{"order":{i},"amount":{}}}"#, i * 10))
                .with_key(format!("customer-{}", i % 3))
                .with_header("content-type", "application/json")
        })
        .collect();
    let deliveries = producer.send_batch(events).await?;
    println!("sent {} events, each acknowledged", deliveries.len());

    // Two members of the `billing` group split the partitions between them.
    let mut members = Vec::new();
    for name in ["billing-a", "billing-b"] {
        let consumer = hub
            .consumer("orders", ConsumerOptions::new("billing"))
            .await?;
        members.push((name, consumer));
    }
    let mut per_member: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_customer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tracker = CommitTracker::new();
    for (name, consumer) in &members {
        // Drain what this member owns; stop when it has been idle for a moment.
        while let Ok(event) =
            tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        {
            let event = event?;
            tracker.received(&event);
            let customer =
                String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned();
            per_customer
                .entry(customer)
                .or_default()
                .push(String::from_utf8_lossy(&event.payload).into_owned());
            *per_member.entry(name).or_default() += 1;
            tracker.ack(&event); // processing succeeded
        }
        for checkpoint in tracker.ready() {
            consumer.commit(&checkpoint).await?;
            tracker.committed(&checkpoint);
            println!(
                "{name} committed partition {} up to offset {}",
                checkpoint.partition, checkpoint.offset
            );
        }
    }
    for (member, count) in &per_member {
        println!("{member} processed {count} events");
    }
    for (customer, orders) in &per_customer {
        println!(
            "{customer}: {} events, in order: {}",
            orders.len(),
            orders.join(" ")
        );
    }

    // A second group gets every event too (fan-out), independently of `billing`.
    let audit = hub
        .consumer("orders", ConsumerOptions::new("audit"))
        .await?;
    let mut audited = 0;
    while tokio::time::timeout(Duration::from_millis(200), audit.recv())
        .await
        .is_ok()
    {
        audited += 1;
    }
    println!("the `audit` group received all {audited} events as well");

    for (_, consumer) in members {
        consumer.close().await?;
    }
    producer.close().await?;
    println!("done");
    Ok(())
}
