//! Commits racing rebalances: the obvious consumer loop keeps running.

#[allow(unused_imports)]
use super::*;

use evhub_core::checkpoint::last_per_partition;
use evhub_core::CommitOutcome;

/// A member commits events of partitions that moved to another member while it held them:
/// each such commit returns `NotOwned` (not an error); both members' receive-and-commit loops
/// keep running through the rebalances and every event is processed at least once.
pub async fn commit_after_rebalance_keeps_loop_running(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "commit-race", 4).await?;
    let g = group(h, &hub, "commit-race").await?;
    let n = 200;
    let events: Vec<Event> = (0..n)
        .map(|i| Event::new(format!("m{i}")).with_key(format!("key-{i}")))
        .collect();
    backend.producer(&hub).await?.send_batch(events).await?;
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    wait_assigned(h, &*a).await?;
    // `a` holds uncommitted events of every partition when `b` joins.
    let mut a_held = Vec::new();
    let deadline = Instant::now() + h.timeout();
    while a_held
        .iter()
        .map(|e: &ReceivedEvent| e.partition)
        .collect::<HashSet<_>>()
        .len()
        < 4
    {
        ensure!(
            Instant::now() < deadline,
            "member a saw partitions {:?} only",
            a_held
                .iter()
                .map(|e: &ReceivedEvent| e.partition)
                .collect::<HashSet<_>>()
        );
        a_held.extend(a.recv_batch(8, Duration::from_millis(200)).await?);
    }
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut not_owned = 0;
    let deadline = Instant::now() + h.timeout();
    loop {
        let a_now = a.assignment().await?;
        let b_now = b.assignment().await?;
        if !a_now.is_empty() && !b_now.is_empty() && a_now.len() + b_now.len() == 4 {
            break;
        }
        ensure!(Instant::now() < deadline, "group did not settle");
        // Both members keep calling in, as a real loop does.
        a_held.extend(a.recv_batch(8, Duration::from_millis(50)).await?);
        for e in b.recv_batch(8, Duration::from_millis(50)).await? {
            seen.insert(text(&e));
            for cp in last_per_partition(std::slice::from_ref(&e)) {
                if b.commit(&cp).await? == CommitOutcome::NotOwned {
                    not_owned += 1;
                }
            }
        }
    }
    // The commits for what `a` held: those of moved partitions are skipped, not errors.
    let a_owned = a.assignment().await?;
    for cp in last_per_partition(&a_held) {
        let outcome = a.commit(&cp).await?;
        if !a_owned.contains(&cp.partition) {
            ensure!(
                outcome == CommitOutcome::NotOwned,
                "commit of moved partition {} returned {outcome:?}",
                cp.partition
            );
            not_owned += 1;
        }
    }
    ensure!(
        not_owned > 0,
        "no commit raced a rebalance; the case proved nothing"
    );
    seen.extend(a_held.iter().map(text));
    // Both loops go on to the end: every event processed at least once.
    let drain = |member: Arc<dyn Consumer>| async move {
        let mut got = Vec::new();
        let quiet_for = h.quiet_period();
        let mut last_event = Instant::now();
        let deadline = Instant::now() + h.timeout();
        while last_event.elapsed() < quiet_for * 2 && Instant::now() < deadline {
            let batch = member.recv_batch(32, Duration::from_millis(100)).await?;
            if batch.is_empty() {
                continue;
            }
            last_event = Instant::now();
            for cp in last_per_partition(&batch) {
                member.commit(&cp).await?;
            }
            got.extend(batch);
        }
        Ok::<_, Failure>(got)
    };
    let (a_rest, b_rest) = tokio::join!(drain(a.clone()), drain(b.clone()));
    seen.extend(a_rest?.iter().chain(&b_rest?).map(text));
    ensure!(
        seen.len() == n,
        "processed {} of {n} events at least once",
        seen.len()
    );
    a.close().await?;
    b.close().await?;
    Ok(Outcome::Passed)
}

/// A member that received an event and then stops calling in (a slow application) does not
/// stall the group: its background work keeps serving rebalances, so a member that joins
/// receives its share within the harness timeout while the first one is still idle, and the
/// first one's next receive works.
pub async fn slow_member_does_not_stall_group(h: &dyn Harness) -> CaseResult {
    let (backend, hub) = setup(h, "slow-member", 4).await?;
    let g = group(h, &hub, "slow-member").await?;
    // Enough events that the slow member's read-ahead fills up while it sleeps.
    let producer = backend.producer(&hub).await?;
    for chunk in 0..20 {
        let events: Vec<Event> = (chunk * 250..(chunk + 1) * 250)
            .map(|i| Event::new(format!("w{i}")).with_partition(i % 4))
            .collect();
        producer.send_batch(events).await?;
    }
    let a = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let first = recv_n(h, &*a, 1).await?;
    // From here on `a` makes no call at all until `b` received its share (and 2 s more).
    let b = join(h, &hub, ConsumerOptions::new(&g)).await?;
    let joined = Instant::now();
    let mut b_got = Vec::new();
    while b_got.is_empty() {
        ensure!(
            Instant::now() < joined + h.timeout(),
            "the new member got nothing within {:?} while the first member was idle: the group waits for the slow member",
            h.timeout()
        );
        b_got = b.recv_batch(100, Duration::from_millis(500)).await?;
    }
    let b_owned = b.assignment().await?;
    ensure!(
        b_got.iter().all(|e| b_owned.contains(&e.partition)),
        "member b received partitions {:?} outside its assignment {b_owned:?}",
        b_got.iter().map(|e| e.partition).collect::<HashSet<_>>()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The slow member carries on: its next receive works and never returns b's partitions.
    let a_next = a.recv_batch(100, h.timeout()).await?;
    let a_owned = a.assignment().await?;
    ensure!(
        a_next.iter().all(|e| a_owned.contains(&e.partition)),
        "after idling, member a returned events of partitions {:?}, owns {a_owned:?}",
        a_next.iter().map(|e| e.partition).collect::<HashSet<_>>()
    );
    ensure!(
        a_owned.iter().all(|p| !b_owned.contains(p)) || b.assignment().await? != b_owned,
        "a and b both own {:?}",
        a_owned
            .iter()
            .filter(|p| b_owned.contains(p))
            .collect::<Vec<_>>()
    );
    drop(first);
    a.close().await?;
    b.close().await?;
    Ok(Outcome::Passed)
}
