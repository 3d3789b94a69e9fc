//! Helpers shared by the cases.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub_core::{Consumer, ConsumerOptions, Error, PartitionId, PartitionReader, ReceivedEvent};
use rand::Rng;

use crate::harness::{Harness, Outcome};

/// Why a case failed.
#[derive(Debug)]
pub struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let mut text = format!("unexpected error: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failure(text)
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

/// What a case returns.
pub type CaseResult = Result<Outcome, Failure>;

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::support::Failure::from(format!($($msg)+)));
        }
    };
}
pub(crate) use ensure;

/// A name no other case or run uses: `evhub-<case>-<random>`.
pub fn unique_name(case: &str) -> String {
    let suffix: u64 = rand::thread_rng().gen();
    let short: String = case
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    format!("evhub-{short}-{suffix:016x}")
}

pub(crate) fn text(e: &ReceivedEvent) -> String {
    String::from_utf8_lossy(&e.payload).into_owned()
}

/// Receives exactly `n` events or fails after the harness timeout.
pub(crate) async fn recv_n(
    h: &dyn Harness,
    consumer: &dyn Consumer,
    n: usize,
) -> Result<Vec<ReceivedEvent>, Failure> {
    take_n(h, n, || consumer.recv()).await
}

/// Receives exactly `n` events from a partition reader or fails after the harness timeout.
pub(crate) async fn read_n(
    h: &dyn Harness,
    reader: &dyn PartitionReader,
    n: usize,
) -> Result<Vec<ReceivedEvent>, Failure> {
    take_n(h, n, || reader.recv()).await
}

async fn take_n<F, Fut>(
    h: &dyn Harness,
    n: usize,
    mut next: F,
) -> Result<Vec<ReceivedEvent>, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = evhub_core::Result<ReceivedEvent>>,
{
    let deadline = Instant::now() + h.timeout();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, next()).await {
            Ok(event) => out.push(event?),
            Err(_) => {
                return Err(Failure(format!(
                    "received {} of {n} events within {:?}: {:?}",
                    out.len(),
                    h.timeout(),
                    out.iter().map(text).collect::<Vec<_>>()
                )))
            }
        }
    }
    Ok(out)
}

/// Fails if the consumer yields an event within the quiet period.
pub(crate) async fn expect_quiet(h: &dyn Harness, consumer: &dyn Consumer) -> Result<(), Failure> {
    match tokio::time::timeout(h.quiet_period(), consumer.recv()).await {
        Err(_) => Ok(()),
        Ok(Ok(e)) => Err(Failure(format!(
            "unexpected event `{}` (partition {}, offset {})",
            text(&e),
            e.partition,
            e.offset
        ))),
        Ok(Err(e)) => Err(e.into()),
    }
}

/// Joins `group` on `hub` through a new connection.
pub(crate) async fn join(
    h: &dyn Harness,
    hub: &str,
    options: ConsumerOptions,
) -> Result<Arc<dyn Consumer>, Failure> {
    Ok(h.connect().await?.consumer(hub, options).await?)
}

/// Waits until the members' assignments are disjoint, non-empty and cover all partitions.
pub(crate) async fn wait_settled(
    h: &dyn Harness,
    members: &[&dyn Consumer],
    partitions: u32,
) -> Result<Vec<Vec<PartitionId>>, Failure> {
    let deadline = Instant::now() + h.timeout();
    loop {
        let mut assignments = Vec::new();
        for m in members {
            let mut a = m.assignment().await?;
            a.sort_unstable();
            assignments.push(a);
        }
        let all: Vec<PartitionId> = assignments.iter().flatten().copied().collect();
        let distinct: HashSet<_> = all.iter().copied().collect();
        let settled = assignments.iter().all(|a| !a.is_empty())
            && all.len() == distinct.len()
            && distinct.len() == partitions as usize;
        if settled {
            return Ok(assignments);
        }
        if Instant::now() >= deadline {
            return Err(Failure(format!(
                "consumer group did not settle within {:?}; last assignments {assignments:?}",
                h.timeout()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a member owns at least one partition.
pub(crate) async fn wait_assigned(h: &dyn Harness, member: &dyn Consumer) -> Result<(), Failure> {
    let deadline = Instant::now() + h.timeout();
    while member.assignment().await?.is_empty() {
        if Instant::now() >= deadline {
            return Err(Failure(format!(
                "member got no partition within {:?}",
                h.timeout()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
