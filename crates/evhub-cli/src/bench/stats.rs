//! Benchmark payloads, measurements and statistics.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Microseconds since the Unix epoch, the clock carried in every payload.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A payload of `size` bytes: send time (µs, LE) and sequence number (LE), then filler.
pub fn payload(size: usize, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&now_micros().to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(size.max(16), b'x');
    v
}

/// `(send time µs, sequence)` of a benchmark payload.
pub fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let ts = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((ts, seq))
}

/// Events `[from, to)` of `total` for producer `index` of `producers`.
pub fn share(total: u64, producers: u32, index: u32) -> (u64, u64) {
    let p = u64::from(producers);
    let i = u64::from(index);
    (total * i / p, total * (i + 1) / p)
}

/// CPU time (user + system) of the whole process so far, from `/proc/self/stat` (Linux).
///
/// Wall-clock rates swing with whatever else runs on the machine; CPU time per event does
/// not, so the benchmark reports both.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (`state`).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI Rust supports.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time of each live thread of the process in ns, from `/proc/self/task/*/schedstat`
/// (Linux, nanosecond resolution; `/proc/self/stat` counts 10 ms ticks, too coarse for
/// sub-microsecond costs per event).
pub fn thread_cpu() -> Option<HashMap<u64, u64>> {
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
            threads.insert(tid, ns);
        }
    }
    (!threads.is_empty()).then_some(threads)
}

/// Measures wall and CPU time of a phase.
#[derive(Debug, Clone)]
pub struct Clock {
    wall: std::time::Instant,
    cpu: Option<Duration>,
    threads: Option<HashMap<u64, u64>>,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            threads: thread_cpu(),
            cpu: process_cpu(),
            wall: std::time::Instant::now(),
        }
    }

    /// The phase that moved `events` events of `bytes` payload bytes since [`Clock::start`].
    ///
    /// CPU time is the sum over threads of what each ran since the start (threads that ended
    /// during the phase are missed; the benchmark's threads live through their phases), or the
    /// process's tick count where per-thread figures are not available.
    pub fn phase(&self, events: u64, bytes: u64) -> Phase {
        self.phase_with_wall(events, bytes, self.wall.elapsed())
    }

    /// Like [`Clock::phase`], with the wall time measured elsewhere (the mirror phase takes it
    /// from the pipeline's own clock: first event to the last acknowledged one).
    pub fn phase_with_wall(&self, events: u64, bytes: u64, wall: Duration) -> Phase {
        let mut phase = Phase::new(events, bytes, wall);
        phase.cpu_seconds = match (&self.threads, thread_cpu()) {
            (Some(start), Some(end)) => {
                let ns: u64 = end
                    .iter()
                    .map(|(tid, ns)| ns.saturating_sub(start.get(tid).copied().unwrap_or(0)))
                    .sum();
                Some(ns as f64 / 1e9)
            }
            _ => match (self.cpu, process_cpu()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
                _ => None,
            },
        };
        phase
    }
}

/// One timed throughput phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phase {
    /// Events moved.
    pub events: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Wall time of the phase.
    pub seconds: f64,
    /// CPU time the whole process used during the phase (Linux; per-thread schedstat, ns).
    pub cpu_seconds: Option<f64>,
}

impl Phase {
    pub fn new(events: u64, bytes: u64, elapsed: Duration) -> Self {
        Self {
            events,
            bytes,
            seconds: elapsed.as_secs_f64().max(1e-9),
            cpu_seconds: None,
        }
    }

    /// Process CPU microseconds per event.
    pub fn cpu_us_per_event(&self) -> Option<f64> {
        let cpu = self.cpu_seconds?;
        (self.events > 0 && cpu > 0.0).then(|| cpu * 1e6 / self.events as f64)
    }

    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Megabytes (10^6 bytes) of payload per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

/// End-to-end latencies in µs.
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    /// The `q`-quantile (0..=1) in milliseconds, nearest-rank.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1] as f64 / 1000.0)
    }
}

/// What one run (one client, one round) measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub produce: Phase,
    pub consume: Phase,
    /// From joining the group to the first event.
    pub join_seconds: f64,
    pub latencies: Latencies,
    /// Raw client only: the backlog read again by a second group, copying every message into
    /// an owned evhub event on the reading task (the copy an owned-event API needs, without
    /// evhub's background task and hand-over).
    pub consume_owned: Option<Phase>,
    /// evhub only: the backlog read again by a second group with `recv_batch`.
    pub consume_batch: Option<Phase>,
    /// The backlog mirrored into a fresh hub (consume → produce, at-least-once); `None` with
    /// `--no-mirror` and for raw clients without a mirror (Event Hubs).
    pub mirror: Option<Phase>,
}

/// The reported numbers of one client: medians over rounds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Metrics {
    pub produce_events_per_s: f64,
    pub produce_mb_per_s: f64,
    pub consume_events_per_s: f64,
    pub consume_mb_per_s: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub consume_join_s: f64,
    pub produce_cpu_us_per_event: Option<f64>,
    pub consume_cpu_us_per_event: Option<f64>,
    pub consume_owned_events_per_s: Option<f64>,
    pub consume_owned_cpu_us_per_event: Option<f64>,
    pub consume_batch_events_per_s: Option<f64>,
    pub consume_batch_cpu_us_per_event: Option<f64>,
    pub mirror_events_per_s: Option<f64>,
    pub mirror_cpu_us_per_event: Option<f64>,
}

/// Report rows: (evhub field, raw field, label, higher is better). The ratio is evhub/raw.
pub const METRICS: &[(&str, &str, &str, bool)] = &[
    (
        "produce_events_per_s",
        "produce_events_per_s",
        "produce events/s",
        true,
    ),
    ("produce_mb_per_s", "produce_mb_per_s", "produce MB/s", true),
    (
        "consume_events_per_s",
        "consume_events_per_s",
        "consume (recv) events/s",
        true,
    ),
    (
        "consume_batch_events_per_s",
        "consume_events_per_s",
        "consume (recv_batch) events/s",
        true,
    ),
    ("consume_mb_per_s", "consume_mb_per_s", "consume MB/s", true),
    (
        "mirror_events_per_s",
        "mirror_events_per_s",
        "mirror events/s",
        true,
    ),
    ("latency_p50_ms", "latency_p50_ms", "latency p50 ms", false),
    ("latency_p99_ms", "latency_p99_ms", "latency p99 ms", false),
    ("consume_join_s", "consume_join_s", "group join s", false),
    (
        "produce_cpu_us_per_event",
        "produce_cpu_us_per_event",
        "produce CPU µs/event",
        false,
    ),
    (
        "consume_cpu_us_per_event",
        "consume_cpu_us_per_event",
        "consume (recv) CPU µs/event",
        false,
    ),
    (
        "consume_batch_cpu_us_per_event",
        "consume_cpu_us_per_event",
        "consume (recv_batch) CPU µs/event",
        false,
    ),
    (
        "mirror_cpu_us_per_event",
        "mirror_cpu_us_per_event",
        "mirror CPU µs/event",
        false,
    ),
    (
        "consume_events_per_s",
        "consume_owned_events_per_s",
        "consume events/s vs raw+copy",
        true,
    ),
    (
        "consume_cpu_us_per_event",
        "consume_owned_cpu_us_per_event",
        "consume CPU µs/event vs raw+copy",
        false,
    ),
];

impl Metrics {
    /// Medians of each metric over `runs`.
    pub fn median_of(runs: &[RunResult]) -> Self {
        let med = |f: &dyn Fn(&RunResult) -> Option<f64>| median(runs.iter().filter_map(f));
        Self {
            produce_events_per_s: med(&|r| Some(r.produce.events_per_s())).unwrap_or(0.0),
            produce_mb_per_s: med(&|r| Some(r.produce.mb_per_s())).unwrap_or(0.0),
            consume_events_per_s: med(&|r| Some(r.consume.events_per_s())).unwrap_or(0.0),
            consume_mb_per_s: med(&|r| Some(r.consume.mb_per_s())).unwrap_or(0.0),
            latency_p50_ms: med(&|r| r.latencies.quantile_ms(0.50)),
            latency_p99_ms: med(&|r| r.latencies.quantile_ms(0.99)),
            consume_join_s: med(&|r| Some(r.join_seconds)).unwrap_or(0.0),
            produce_cpu_us_per_event: med(&|r| r.produce.cpu_us_per_event()),
            consume_cpu_us_per_event: med(&|r| r.consume.cpu_us_per_event()),
            consume_owned_events_per_s: med(&|r| r.consume_owned.map(|p| p.events_per_s())),
            consume_owned_cpu_us_per_event: med(&|r| {
                r.consume_owned.and_then(|p| p.cpu_us_per_event())
            }),
            consume_batch_events_per_s: med(&|r| r.consume_batch.map(|p| p.events_per_s())),
            consume_batch_cpu_us_per_event: med(&|r| {
                r.consume_batch.and_then(|p| p.cpu_us_per_event())
            }),
            mirror_events_per_s: med(&|r| r.mirror.map(|p| p.events_per_s())),
            mirror_cpu_us_per_event: med(&|r| r.mirror.and_then(|p| p.cpu_us_per_event())),
        }
    }

    /// Mirror events/s divided by `consume_field` events/s (both medians over rounds): how
    /// close a consume → produce mirror comes to reading alone.
    pub fn mirror_vs(&self, consume_field: &str) -> Option<f64> {
        let mirror = self.mirror_events_per_s?;
        let consume = self.get(consume_field)?;
        (consume > 0.0).then(|| mirror / consume)
    }

    /// A metric by field name.
    pub fn get(&self, field: &str) -> Option<f64> {
        match field {
            "produce_events_per_s" => Some(self.produce_events_per_s),
            "produce_mb_per_s" => Some(self.produce_mb_per_s),
            "consume_events_per_s" => Some(self.consume_events_per_s),
            "consume_mb_per_s" => Some(self.consume_mb_per_s),
            "latency_p50_ms" => self.latency_p50_ms,
            "latency_p99_ms" => self.latency_p99_ms,
            "consume_join_s" => Some(self.consume_join_s),
            "produce_cpu_us_per_event" => self.produce_cpu_us_per_event,
            "consume_cpu_us_per_event" => self.consume_cpu_us_per_event,
            "consume_owned_events_per_s" => self.consume_owned_events_per_s,
            "consume_owned_cpu_us_per_event" => self.consume_owned_cpu_us_per_event,
            "consume_batch_events_per_s" => self.consume_batch_events_per_s,
            "consume_batch_cpu_us_per_event" => self.consume_batch_cpu_us_per_event,
            "mirror_events_per_s" => self.mirror_events_per_s,
            "mirror_cpu_us_per_event" => self.mirror_cpu_us_per_event,
            _ => None,
        }
    }
}

/// Median of the values (mean of the middle two for an even count).
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_has_the_size() {
        let p = payload(100, 42);
        assert_eq!(p.len(), 100);
        let (ts, seq) = decode(&p).unwrap_or_default();
        assert_eq!(seq, 42);
        assert!(now_micros() >= ts && now_micros() - ts < 10_000_000);
        assert_eq!(decode(b"short"), None);
    }

    #[test]
    fn shares_cover_everything_once() {
        let parts: Vec<_> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(parts, [(0, 3), (3, 6), (6, 10)]);
    }

    #[test]
    fn quantiles_and_medians() {
        let l = Latencies((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(l.quantile_ms(0.5), Some(50.0));
        assert_eq!(l.quantile_ms(0.99), Some(99.0));
        assert_eq!(Latencies::default().quantile_ms(0.5), None);
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn process_cpu_grows_with_work() {
        let Some(before) = process_cpu() else {
            return; // not Linux
        };
        let clock = Clock::start();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu().unwrap_or_default();
        assert!(
            after - before >= Duration::from_millis(150),
            "{before:?} -> {after:?}"
        );
        let phase = clock.phase(1000, 1000);
        assert!(
            phase.cpu_us_per_event().unwrap_or_default() >= 150.0,
            "{phase:?}"
        );
    }

    #[test]
    fn phase_rates() {
        let p = Phase::new(1000, 100_000, Duration::from_millis(500));
        assert!((p.events_per_s() - 2000.0).abs() < 1e-6);
        assert!((p.mb_per_s() - 0.2).abs() < 1e-9);
    }
}
