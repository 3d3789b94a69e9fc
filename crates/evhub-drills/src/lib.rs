//! Helpers for the fault drills in `tests/`: counting lost and duplicated events, child
//! processes that are always reaped, and control of the local servers.
//!
//! Each drill kills a real process (a broker, the Event Hubs emulator, a consumer-group
//! member, a pipeline) in the middle of a stream and prints one line,
//! `drill <name>: events=N lost=0 duplicates=D recovery_s=S`. Lost must be 0.

pub use evhub_testkit::azurite;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// Counts how often each event (by its unique payload) was processed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    seen: HashMap<String, u32>,
}

impl Tally {
    /// Records one processing of `id`.
    pub fn record(&mut self, id: impl Into<String>) {
        *self.seen.entry(id.into()).or_default() += 1;
    }

    /// Distinct events processed.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    /// Events processed more than once, counting every extra time.
    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// Of `expected`, the ids never processed.
    pub fn missing<'a>(&self, expected: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
        expected
            .into_iter()
            .filter(|id| !self.seen.contains_key(id.as_str()))
            .collect()
    }
}

/// The figures of one drill.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillReport {
    /// Drill name.
    pub name: String,
    /// Events acknowledged by the producer.
    pub events: usize,
    /// Acknowledged events never processed (must be 0).
    pub lost: usize,
    /// Extra processings (at-least-once redeliveries).
    pub duplicates: u64,
    /// Longest time from a fault until everything was served again.
    pub recovery: Duration,
}

impl DrillReport {
    /// Builds the report from a tally of what was processed and the ids acknowledged.
    pub fn new(name: &str, acknowledged: &[String], tally: &Tally, recovery: Duration) -> Self {
        Self {
            name: name.to_owned(),
            events: acknowledged.len(),
            lost: tally.missing(acknowledged).len(),
            duplicates: tally.duplicates(),
            recovery,
        }
    }

    /// Prints the drill line to stderr, past the test harness's capture.
    pub fn print(&self) {
        let _ = writeln!(
            std::io::stderr(),
            "drill {}: events={} lost={} duplicates={} recovery_s={:.1}",
            self.name,
            self.events,
            self.lost,
            self.duplicates,
            self.recovery.as_secs_f64()
        );
    }
}

/// Prints why a drill could not run (a server it needs is not configured).
pub fn skip(name: &str, reason: &str) {
    // One write, so parallel tests' output cannot split the line.
    let line = format!("SKIPPED drill {name}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A child process killed and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.spawn().map(Self)
    }

    /// Process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. "INT", "TERM") with `kill(1)`.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} failed")))
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code, if it did.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.running() {
            self.kill9();
        }
    }
}

/// A binary of this workspace built next to the running test (`target/<profile>/<name>`):
/// `cargo test --workspace` builds every package's binaries.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent()?.parent()?;
    let path = profile_dir.join(name);
    path.is_file().then_some(path)
}

/// Runs the local broker's control script (`scripts/kafka.sh`, path in
/// `EVHUB_TEST_KAFKA_CONTROL`) with `command` (`kill`, `resume`).
pub fn kafka_control(command: &str) -> Result<(), String> {
    let script = std::env::var("EVHUB_TEST_KAFKA_CONTROL")
        .map_err(|_| "EVHUB_TEST_KAFKA_CONTROL is not set".to_owned())?;
    let output = Command::new("bash")
        .arg(&script)
        .arg(command)
        .output()
        .map_err(|e| format!("running {script} {command}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script} {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A unique name for a hub or group of one drill run.
pub fn unique(prefix: &str) -> String {
    format!("drill-{prefix}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_lost_and_duplicates() {
        let mut t = Tally::default();
        for id in ["a", "b", "b", "c", "c", "c"] {
            t.record(id);
        }
        let acked: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let r = DrillReport::new("x", &acked, &t, Duration::ZERO);
        assert_eq!((r.events, r.lost, r.duplicates), (4, 1, 3));
    }
}

/// One processed event: when, from which partition, its unique id.
#[derive(Debug, Clone)]
pub struct Processed {
    /// When the consumer handed it to the application.
    pub at: std::time::Instant,
    /// Partition it was read from.
    pub partition: u32,
    /// The event's unique id (its payload).
    pub id: String,
}

/// How long after `fault` every partition was served again: for each partition that received
/// events produced after the fault, the first processing of such an event; the longest wait.
/// `None` when a partition with such events was never served again.
pub fn recovery_after(
    fault: std::time::Instant,
    processed: &[Processed],
    produced_at: &HashMap<String, (std::time::Instant, u32)>,
) -> Option<Duration> {
    let mut first: HashMap<u32, std::time::Instant> = HashMap::new();
    let mut needed: std::collections::HashSet<u32> = std::collections::HashSet::new();
    for (at, partition) in produced_at.values() {
        if *at > fault {
            needed.insert(*partition);
        }
    }
    for p in processed {
        let Some((sent, _)) = produced_at.get(&p.id) else {
            continue;
        };
        if *sent > fault && p.at > fault {
            let slot = first.entry(p.partition).or_insert(p.at);
            if p.at < *slot {
                *slot = p.at;
            }
        }
    }
    needed
        .iter()
        .map(|p| first.get(p).map(|t| t.duration_since(fault)))
        .try_fold(Duration::ZERO, |acc, d| d.map(|d| acc.max(d)))
}
