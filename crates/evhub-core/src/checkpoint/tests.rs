//! Tests of the commit tracker.
use super::*;

fn ev(partition: PartitionId, offset: i64) -> ReceivedEvent {
    ReceivedEvent {
        hub: "h".into(),
        partition,
        offset,
        service_offset: Some(format!("svc-{offset}")),
        enqueued_at: None,
        key: None,
        payload: Default::default(),
        headers: vec![],
    }
}

#[test]
fn failed_event_blocks_later_commits() {
    let mut t = CommitTracker::new();
    let events: Vec<_> = (0..5).map(|o| ev(0, o)).collect();
    events.iter().for_each(|e| t.received(e));
    t.ack(&events[0]);
    t.ack(&events[2]);
    t.ack(&events[3]);
    let ready = t.ready();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].offset, 0);
    t.committed(&ready[0]);
    assert!(t.ready().is_empty());
    assert_eq!(t.in_flight(), 2);
    t.ack(&events[1]);
    let ready = t.ready();
    assert_eq!(ready[0].offset, 3);
}

#[test]
fn partitions_are_independent_and_service_offset_kept() {
    let mut t = CommitTracker::new();
    let (a, b) = (ev(0, 10), ev(1, 20));
    t.received(&a);
    t.received(&b);
    t.ack(&b);
    let ready = t.ready();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].partition, 1);
    assert_eq!(ready[0].service_offset.as_deref(), Some("svc-20"));
}

#[test]
fn memory_stays_bounded_behind_a_stuck_event() {
    let mut t = CommitTracker::new();
    let stuck = ev(0, 0);
    t.received(&stuck);
    for o in 1..100_000 {
        let e = ev(0, o);
        t.received(&e);
        t.ack(&e);
    }
    let track = &t.hubs["h"][&0];
    assert_eq!(track.acked.len(), 1, "one range behind the stuck event");
    assert_eq!(track.outstanding.len(), 1);
    assert!(t.ready().is_empty());
    assert_eq!(
        t.blocked(),
        vec![Blocked {
            hub: "h".into(),
            partition: 0,
            offset: 0,
            acked_behind: 99_999
        }]
    );
    t.ack(&stuck);
    assert_eq!(t.ready()[0].offset, 99_999);
    assert_eq!(t.ready()[0].service_offset.as_deref(), Some("svc-99999"));
    assert!(t.blocked().is_empty());
    assert_eq!(t.in_flight(), 0);
}

#[test]
fn offset_gaps_do_not_fragment_and_do_not_block() {
    // Kafka offsets may skip (transaction markers, compaction).
    let mut t = CommitTracker::new();
    let events: Vec<_> = [3, 5, 9, 10, 14].iter().map(|&o| ev(0, o)).collect();
    t.received_batch(&events);
    t.ack_batch(&events[1..]);
    assert_eq!(t.hubs["h"][&0].acked.len(), 1);
    assert!(t.ready().is_empty());
    t.ack(&events[0]);
    assert_eq!(t.ready()[0].offset, 14);
}

#[test]
fn out_of_order_acks_in_the_middle() {
    let mut t = CommitTracker::new();
    let events: Vec<_> = (0..10).map(|o| ev(0, o)).collect();
    t.received_batch(&events);
    for i in [9, 1, 5, 3, 7, 2, 8, 6, 4] {
        t.ack(&events[i]);
        assert!(t.ready().is_empty(), "0 is still pending after acking {i}");
    }
    assert_eq!(t.in_flight(), 1);
    t.ack(&events[0]);
    assert_eq!(t.ready()[0].offset, 9);
    assert_eq!(t.in_flight(), 0);
}

#[test]
fn redelivered_acked_event_does_not_block() {
    let mut t = CommitTracker::new();
    let (a, b) = (ev(0, 1), ev(0, 2));
    t.received(&a);
    t.received(&b);
    t.ack(&a);
    t.received(&a); // redelivered
    t.ack(&b);
    assert_eq!(t.ready()[0].offset, 2);
}

#[test]
fn last_per_partition_picks_highest_offset() {
    let batch = vec![ev(0, 1), ev(1, 7), ev(0, 2), ev(1, 8)];
    let cps = last_per_partition(&batch);
    assert_eq!(cps.len(), 2);
    assert_eq!((cps[0].partition, cps[0].offset), (0, 2));
    assert_eq!((cps[1].partition, cps[1].offset), (1, 8));
}

#[test]
fn ack_of_unknown_event_is_ignored() {
    let mut t = CommitTracker::new();
    t.ack(&ev(0, 3));
    assert!(t.ready().is_empty());
    assert_eq!(t.in_flight(), 0);
}
