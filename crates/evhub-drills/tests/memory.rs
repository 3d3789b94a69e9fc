//! Memory backend: a member dropped in the middle of a batch loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evhub::{CommitTracker, Consumer, ConsumerOptions, Event, Hub, HubOptions};
use evhub_drills::{recovery_after, DrillReport, Processed, Tally};

type Log = Arc<Mutex<Vec<Processed>>>;

async fn member(consumer: Arc<dyn Consumer>, log: Log, stop: Arc<AtomicBool>) -> evhub::Result<()> {
    let mut tracker = CommitTracker::new();
    while !stop.load(Ordering::Relaxed) {
        let batch = consumer.recv_batch(50, Duration::from_millis(50)).await?;
        tracker.received_batch(&batch);
        for event in &batch {
            log.lock().unwrap().push(Processed {
                at: Instant::now(),
                partition: event.partition,
                id: String::from_utf8_lossy(&event.payload).into_owned(),
            });
            tracker.ack(event);
        }
        tracker.commit_ready(&*consumer).await?;
    }
    consumer.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_member_dropped_mid_batch() {
    let hub = Hub::from_url("memory://").await.unwrap();
    hub.create_hub("drill", HubOptions::with_partitions(6))
        .await
        .unwrap();
    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut survivors = Vec::new();
    for _ in 0..2 {
        let c = hub
            .consumer("drill", ConsumerOptions::new("g"))
            .await
            .unwrap();
        survivors.push(tokio::spawn(member(c, log.clone(), stop.clone())));
    }
    // The victim processes half of one batch, then is dropped without acknowledging the rest.
    let victim = hub
        .consumer("drill", ConsumerOptions::new("g"))
        .await
        .unwrap();
    let producer = hub.producer("drill").await.unwrap();
    let mut produced_at = HashMap::new();
    let mut acknowledged = Vec::new();
    let total = 30_000;
    let mut fault = None;
    for chunk in 0..total / 100 {
        let events: Vec<Event> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| Event::new(format!("e{i}")).with_partition((i % 6) as u32))
            .collect();
        let sent = Instant::now();
        producer.send_batch(events).await.unwrap();
        for i in chunk * 100..(chunk + 1) * 100 {
            produced_at.insert(format!("e{i}"), (sent, (i % 6) as u32));
            acknowledged.push(format!("e{i}"));
        }
        if chunk == total / 300 {
            let batch = victim.recv_batch(40, Duration::from_secs(5)).await.unwrap();
            assert!(
                !batch.is_empty(),
                "the victim owns partitions and events wait"
            );
            for event in &batch[..batch.len() / 2] {
                log.lock().unwrap().push(Processed {
                    at: Instant::now(),
                    partition: event.partition,
                    id: String::from_utf8_lossy(&event.payload).into_owned(),
                });
            }
            fault = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(victim);
    let fault = fault.expect("the victim was dropped");
    for chunk in total / 300 + 1..total / 100 {
        let events: Vec<Event> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| Event::new(format!("e{i}")).with_partition((i % 6) as u32))
            .collect();
        let sent = Instant::now();
        producer.send_batch(events).await.unwrap();
        for i in chunk * 100..(chunk + 1) * 100 {
            produced_at.insert(format!("e{i}"), (sent, (i % 6) as u32));
            acknowledged.push(format!("e{i}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut tally = Tally::default();
        log.lock()
            .unwrap()
            .iter()
            .for_each(|p| tally.record(p.id.clone()));
        if tally.missing(&acknowledged).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in survivors {
        s.await.unwrap().unwrap();
    }
    let log = log.lock().unwrap().clone();
    let mut tally = Tally::default();
    log.iter().for_each(|p| tally.record(p.id.clone()));
    let recovery = recovery_after(fault, &log, &produced_at).expect("every partition served again");
    let report = DrillReport::new("memory-member-dropped", &acknowledged, &tally, recovery);
    report.print();
    assert_eq!(
        report.lost,
        0,
        "lost events: {:?}",
        &tally.missing(&acknowledged)[..5.min(report.lost)]
    );
    assert!(
        report.duplicates <= 40,
        "only the victim's unacknowledged batch may repeat"
    );
    assert!(
        recovery < Duration::from_secs(5),
        "recovery took {recovery:?}"
    );
}
