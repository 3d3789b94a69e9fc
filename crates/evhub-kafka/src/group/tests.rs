#![allow(clippy::unwrap_used)]

use super::*;

fn event(partition: PartitionId, offset: i64) -> ReceivedEvent {
    ReceivedEvent {
        hub: Arc::from("h"),
        partition,
        offset,
        service_offset: None,
        enqueued_at: None,
        key: None,
        payload: bytes::Bytes::from_static(b"x"),
        headers: Vec::new(),
    }
}

fn state() -> GroupState {
    GroupState::new(
        Arc::from("h"),
        InitialPosition::Earliest,
        Duration::from_secs(1),
    )
}

#[test]
fn pending_checkpoints_keep_the_highest_and_confirm_clears() {
    let shared = state();
    shared.add_pending(1, 5);
    shared.add_pending(1, 3);
    shared.add_pending(2, 9);
    shared.confirm(2, 8); // an older commit's confirmation keeps the newer pending one
    let mut pending = shared.take_pending(Some(&[1, 2, 3]));
    pending.sort_unstable();
    assert_eq!(pending, vec![(1, 5), (2, 9)]);
    shared.add_pending(4, 2);
    shared.confirm(4, 2);
    assert!(shared.take_pending(None).is_empty());
}

#[test]
fn revocation_drops_queued_events_of_the_partition_only() {
    let s = state();
    s.assigned(&[0, 1]);
    let r = s.revision();
    s.push(&mut vec![event(0, 0), event(1, 0), event(0, 1)], r);
    s.push(&mut vec![event(1, 1)], r);
    s.revoked(&[0]);
    let Taken::Ready(batch) = s.take_batch(10) else {
        panic!("nothing queued")
    };
    let got: Vec<_> = batch.iter().map(|e| (e.partition, e.offset)).collect();
    assert_eq!(got, [(1, 0), (1, 1)]);
    assert_eq!(s.max_delivered(1), Some(1));
    assert_eq!(s.assignment(), [1]);
}

#[test]
fn a_batch_fetched_before_a_revocation_loses_the_revoked_events() {
    let s = state();
    s.assigned(&[0, 1]);
    let fetched_at = s.revision();
    s.revoked(&[1]);
    s.assigned(&[1]); // re-assigned: the events fetched earlier are not of this assignment
    s.push(&mut vec![event(0, 5), event(1, 5)], fetched_at);
    let Taken::Ready(e) = s.take() else {
        panic!("empty")
    };
    assert_eq!((e.partition, e.offset), (0, 5));
    assert!(matches!(s.take(), Taken::Empty));
}

#[test]
fn batches_split_at_max_and_keep_order() {
    let s = state();
    s.assigned(&[0]);
    let r = s.revision();
    s.push(&mut (0..5).map(|o| event(0, o)).collect(), r);
    s.push(&mut (5..8).map(|o| event(0, o)).collect(), r);
    let mut offsets = Vec::new();
    for max in [2, 4, 10] {
        if let Taken::Ready(b) = s.take_batch(max) {
            assert!(b.len() <= max);
            offsets.extend(b.iter().map(|e| e.offset));
        }
    }
    assert_eq!(offsets, (0..8).collect::<Vec<_>>());
}

#[test]
fn draining_below_the_mark_resumes_a_paused_driver() {
    let s = state();
    s.assigned(&[0]);
    let r = s.revision();
    assert!(s.push(
        &mut (0..HIGH_EVENTS as i64).map(|o| event(0, o)).collect(),
        r
    ));
    s.set_paused();
    assert!(s.still_paused());
    let Taken::Ready(_) = s.take_batch(HIGH_EVENTS / 4) else {
        panic!("empty")
    };
    assert!(s.still_paused(), "resumed above the mark");
    let Taken::Ready(_) = s.take_batch(HIGH_EVENTS / 4 + 1) else {
        panic!("empty")
    };
    assert!(!s.still_paused(), "not resumed");
}

#[test]
fn close_ends_at_once_and_failure_after_the_queue() {
    let s = state();
    s.assigned(&[0]);
    s.push(&mut vec![event(0, 0)], s.revision());
    s.fail(Error::new(ErrorKind::Auth, "denied"));
    assert!(matches!(s.take(), Taken::Ready(_)));
    for _ in 0..2 {
        let Taken::Ended(e) = s.take() else {
            panic!("not ended")
        };
        assert_eq!(e.kind(), ErrorKind::Auth);
    }
    let s = state();
    s.assigned(&[0]);
    s.push(&mut vec![event(0, 0)], s.revision());
    s.close();
    let Taken::Ended(e) = s.take_batch(5) else {
        panic!("not closed")
    };
    assert_eq!(e.kind(), ErrorKind::Closed);
}

#[test]
fn a_full_queue_waits_for_the_application_before_pausing() {
    let s = Arc::new(state());
    s.assigned(&[0]);
    let r = s.revision();
    assert!(s.push(
        &mut (0..HIGH_EVENTS as i64).map(|o| event(0, o)).collect(),
        r
    ));
    // Nobody takes: the wait ends at its limit and the driver pauses.
    let started = std::time::Instant::now();
    assert!(!s.wait_for_room(Duration::from_millis(50)));
    assert!(started.elapsed() >= Duration::from_millis(50));

    // The application drains to the resume mark from another thread: the waiting driver is
    // woken at once, long before the limit.
    let app = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let Taken::Ready(_) = s.take_batch(HIGH_EVENTS / 2) else {
                panic!("empty")
            };
        })
    };
    let started = std::time::Instant::now();
    assert!(s.wait_for_room(Duration::from_secs(30)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
    app.join().unwrap();

    // Closing the member ends a wait too.
    assert!(s.push(
        &mut (0..HIGH_EVENTS as i64).map(|o| event(0, o)).collect(),
        s.revision()
    ));
    let closer = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s.close();
        })
    };
    let started = std::time::Instant::now();
    assert!(s.wait_for_room(Duration::from_secs(30)));
    assert!(started.elapsed() < Duration::from_secs(5));
    closer.join().unwrap();
}
