//! `evhub bench`: throughput and end-to-end latency, optionally side by side with the raw client.

mod evhub_run;
mod mirror;
mod raw_eventhubs;
mod raw_kafka;
mod stats;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use evhub::config::Config;
use evhub::pipeline::{PipelineBuilder, RetryPolicy};
use evhub::{Backend, ErrorKind};
use serde_json::{json, Value};
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::{BenchArgs, Cli};
use crate::error::{CliError, CliResult};
use crate::output::table;
use stats::{Metrics, RunResult, METRICS};

/// Most events per `recv_batch` call in the batch-consume phase.
pub const RECV_BATCH: usize = 1000;

/// The workload, identical for evhub and the raw client.
#[derive(Debug, Clone)]
pub struct Workload {
    pub events: u64,
    pub size: usize,
    pub producers: u32,
    pub batch: u64,
    pub partitions: u32,
    pub latency_events: u64,
    pub latency_rate: u64,
    pub phase_timeout: Duration,
    /// Most events per `recv_batch` call.
    pub recv_batch: usize,
    /// Whether runs include the mirror phase (`--no-mirror` skips it).
    pub mirror: bool,
}

impl Workload {
    fn from_args(args: &BenchArgs) -> Self {
        Self {
            events: args.events.max(2),
            size: usize::try_from(args.size).unwrap_or(usize::MAX),
            producers: args.producers,
            batch: u64::from(args.batch),
            partitions: args.partitions,
            latency_events: args.latency_events,
            latency_rate: args.latency_rate,
            phase_timeout: args.phase_timeout,
            recv_batch: RECV_BATCH,
            mirror: !args.no_mirror,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "size": self.size,
            "producers": self.producers,
            "batch": self.batch,
            "partitions": self.partitions,
            "latency_events": self.latency_events,
            "latency_rate": self.latency_rate,
            "recv_batch": self.recv_batch,
            "mirror": self.mirror.then(|| json!({
                "max_in_flight": PipelineBuilder::DEFAULT_MAX_IN_FLIGHT,
                "batch": PipelineBuilder::DEFAULT_BATCH_SIZE,
                "batches_in_flight": PipelineBuilder::DEFAULT_BATCHES_IN_FLIGHT,
                "max_attempts": RetryPolicy::DEFAULT_MAX_ATTEMPTS,
            })),
        })
    }
}

/// Tick length and events per tick for a paced sender at `rate` events/s.
pub fn pacing(rate: u64) -> (Duration, u64) {
    let tick = Duration::from_millis(1).max(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let per_tick = ((rate as f64 * tick.as_secs_f64()).round() as u64).max(1);
    (tick, per_tick)
}

/// Runs `fut`, failing with a timeout error naming `what` after `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = evhub::Result<T>>,
) -> evhub::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| evhub::Error::timeout(format!("{what} did not finish within {limit:?}")))?
}

/// Waits for every task; the first error wins.
pub async fn join_tasks(mut tasks: JoinSet<evhub::Result<()>>) -> evhub::Result<()> {
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(task_failed)??;
    }
    Ok(())
}

/// Waits for one task.
pub async fn join_one(task: JoinHandle<evhub::Result<()>>) -> evhub::Result<()> {
    task.await.map_err(task_failed)?
}

fn task_failed(e: tokio::task::JoinError) -> evhub::Error {
    evhub::Error::new(ErrorKind::Other, format!("benchmark task failed: {e}"))
}

/// The raw client of the configured backend.
enum Raw {
    Kafka(raw_kafka::RawKafka),
    EventHubs(raw_eventhubs::RawEventHubs),
}

impl Raw {
    fn description(&self) -> &'static str {
        match self {
            Raw::Kafka(_) => raw_kafka::CLIENT,
            Raw::EventHubs(_) => raw_eventhubs::CLIENT,
        }
    }

    /// Why this raw client has no mirror phase, if it has none.
    fn no_mirror(&self) -> Option<&'static str> {
        match self {
            Raw::Kafka(_) => None,
            Raw::EventHubs(_) => Some(raw_eventhubs::NO_MIRROR),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Evhub,
    Raw,
}

pub async fn run(
    _cli: &Cli,
    config: &Config,
    backend: &Arc<dyn Backend>,
    args: &BenchArgs,
) -> CliResult {
    let w = Workload::from_args(args);
    if let Config::Memory(m) = config {
        let per_partition = w.events.div_ceil(u64::from(w.partitions));
        if per_partition + w.latency_events > m.partition_capacity as u64 {
            return Err(CliError::usage(format!(
                "memory partitions hold {} events, the benchmark puts up to {} in one: raise it, e.g. --url 'memory://?partition_capacity={}'",
                m.partition_capacity,
                per_partition + w.latency_events,
                (per_partition + w.latency_events).next_power_of_two()
            )));
        }
    }
    // Backends that cannot create hubs (Event Hubs) need the fresh hubs to exist or to be
    // created on first use (the evhub emulator's `--auto-create-hubs`), and read with the
    // `$Default` group every event hub has.
    let creates_hubs = backend.capabilities().create_hub;
    let raw = match (args.compare_raw, config) {
        (false, _) => None,
        (true, Config::EventHubs(_)) => {
            Some(raw_eventhubs::RawEventHubs::from_config(config).map(Raw::EventHubs))
        }
        (true, _) => match raw_kafka::settings(config) {
            Ok(settings) => Some(Ok(Raw::Kafka(
                raw_kafka::RawKafka::connect(settings).await?,
            ))),
            Err(reason) => Some(Err(reason)),
        },
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let run_id = &run_id[..8];
    let mut evhub_runs = Vec::new();
    let mut raw_runs = Vec::new();
    for round in 0..args.rounds {
        // Alternate who goes first, so warm-up and broker state favour neither side.
        let order = if round % 2 == 0 {
            [Client::Evhub, Client::Raw]
        } else {
            [Client::Raw, Client::Evhub]
        };
        for client in order {
            let hub = format!(
                "evhub-bench-{run_id}-r{round}-{}",
                if client == Client::Evhub {
                    "evhub"
                } else {
                    "raw"
                }
            );
            let group = if creates_hubs {
                format!("{hub}-g")
            } else {
                "$Default".to_owned()
            };
            let result = match (client, &raw) {
                (Client::Evhub, _) => evhub_run::run(backend, &w, &hub, &group).await?,
                (Client::Raw, Some(Ok(Raw::Kafka(raw)))) => {
                    raw_kafka::run(raw, backend, &w, &hub, &group).await?
                }
                (Client::Raw, Some(Ok(Raw::EventHubs(raw)))) => {
                    raw_eventhubs::run(raw, &w, &hub).await?
                }
                (Client::Raw, _) => continue,
            };
            eprintln!(
                "round {}/{} {:>5}: produce {:.0} events/s, consume {:.0} events/s, mirror {} events/s, p50 {} ms",
                round + 1,
                args.rounds,
                if client == Client::Evhub {
                    "evhub"
                } else {
                    "raw"
                },
                result.produce.events_per_s(),
                result.consume.events_per_s(),
                result
                    .mirror
                    .map_or("-".into(), |p| format!("{:.0}", p.events_per_s())),
                result
                    .latencies
                    .quantile_ms(0.5)
                    .map_or("-".into(), |v| format!("{v:.2}")),
            );
            match client {
                Client::Evhub => evhub_runs.push(result),
                Client::Raw => raw_runs.push(result),
            }
        }
    }
    let evhub = Metrics::median_of(&evhub_runs);
    let raw_metrics = (!raw_runs.is_empty()).then(|| Metrics::median_of(&raw_runs));
    let raw_note = match &raw {
        Some(Err(reason)) => Some(reason.clone()),
        _ => None,
    };
    let raw_client = match &raw {
        Some(Ok(raw)) => Some(raw.description()),
        _ => None,
    };
    let raw_mirror_note = match &raw {
        Some(Ok(raw)) if w.mirror => raw.no_mirror(),
        _ => None,
    };
    let report = Report {
        backend: backend.id(),
        raw_client,
        workload: &w,
        rounds: args.rounds,
        evhub,
        raw: raw_metrics,
        raw_note,
        raw_mirror_note,
        evhub_runs: &evhub_runs,
        raw_runs: &raw_runs,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

struct Report<'a> {
    backend: &'static str,
    raw_client: Option<&'static str>,
    workload: &'a Workload,
    rounds: u32,
    evhub: Metrics,
    raw: Option<Metrics>,
    raw_note: Option<String>,
    /// Why the raw client has no mirror phase (it ran, but has no mirror).
    raw_mirror_note: Option<&'static str>,
    evhub_runs: &'a [RunResult],
    raw_runs: &'a [RunResult],
}

impl Report<'_> {
    fn ratio(&self, evhub_field: &str, raw_field: &str) -> Option<f64> {
        let raw = self.raw?.get(raw_field)?;
        let ours = self.evhub.get(evhub_field)?;
        (raw > 0.0).then(|| ours / raw)
    }

    fn to_json(&self) -> Value {
        let runs = |runs: &[RunResult]| -> Vec<Value> {
            runs.iter()
                .map(|r| {
                    json!({
                        "produce": r.produce,
                        "consume": r.consume,
                        "join_seconds": r.join_seconds,
                        "latency_p50_ms": r.latencies.quantile_ms(0.5),
                        "latency_p99_ms": r.latencies.quantile_ms(0.99),
                        "consume_owned": r.consume_owned,
                        "consume_batch": r.consume_batch,
                        "mirror": r.mirror,
                    })
                })
                .collect()
        };
        let ratio = self.raw.map(|_| {
            METRICS
                .iter()
                .map(|(ours, raw, _, _)| {
                    let name = if ours == raw {
                        (*ours).to_owned()
                    } else {
                        format!("{ours}_vs_{raw}")
                    };
                    (name, json!(self.ratio(ours, raw)))
                })
                .collect::<serde_json::Map<_, _>>()
        });
        json!({
            "backend": self.backend,
            "workload": self.workload.to_json(),
            "rounds": self.rounds,
            "evhub": self.evhub,
            "raw": self.raw,
            "raw_client": self.raw.and(self.raw_client),
            "raw_skipped": self.raw_note,
            "raw_mirror_skipped": self.raw.and(self.raw_mirror_note),
            "ratio": ratio,
            "mirror_vs_consume_batch": self.evhub.mirror_vs("consume_batch_events_per_s"),
            "raw_mirror_vs_consume": self.raw.and_then(|r| r.mirror_vs("consume_events_per_s")),
            "runs": { "evhub": runs(self.evhub_runs), "raw": runs(self.raw_runs) },
        })
    }

    fn render(&self) -> String {
        let w = self.workload;
        let mut out = format!(
            "backend {}: {} events x {} B, {} producer(s), batch {}, {} partitions, latency {} events at {}/s, {} round(s), median\n",
            self.backend, w.events, w.size, w.producers, w.batch, w.partitions, w.latency_events, w.latency_rate, self.rounds
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), format_number);
        let rows: Vec<Vec<String>> = METRICS
            .iter()
            .enumerate()
            .filter(|(i, (ours, raw, _, _))| match &self.raw {
                Some(r) => ours == raw || r.get(raw).is_some(),
                // Without a raw client each evhub metric once (rows comparing with another raw
                // metric only where the evhub metric has a value).
                None => {
                    ours == raw
                        || (self.evhub.get(ours).is_some()
                            && !METRICS[..*i].iter().any(|(o, ..)| o == ours))
                }
            })
            .map(|(_, row)| row)
            .map(|(ours, raw_field, label, higher_better)| {
                let mut row = vec![(*label).to_owned(), fmt(self.evhub.get(ours))];
                if let Some(raw) = &self.raw {
                    row.push(fmt(raw.get(raw_field)));
                    row.push(self.ratio(ours, raw_field).map_or("-".into(), |r| {
                        format!(
                            "{r:.3}{}",
                            if *higher_better {
                                ""
                            } else {
                                " (lower is better)"
                            }
                        )
                    }));
                }
                row
            })
            .collect();
        let header: &[&str] = if self.raw.is_some() {
            &["metric", "evhub", "raw", "evhub/raw"]
        } else {
            &["metric", "evhub"]
        };
        out.push_str(&table(header, &rows));
        if let (Some(_), Some(client)) = (&self.raw, self.raw_client) {
            out.push_str(&format!("raw client: {client}\n"));
        }
        if let Some(ours) = self.evhub.mirror_vs("consume_batch_events_per_s") {
            let raw = self
                .raw
                .and_then(|r| r.mirror_vs("consume_events_per_s"))
                .map_or(String::new(), |r| {
                    format!("; raw: mirror / consume (recv) {r:.3}")
                });
            out.push_str(&format!(
                "mirror / consume: evhub {ours:.3} (mirror events/s / consume (recv_batch) events/s){raw}\n"
            ));
        }
        if let (Some(_), Some(note)) = (&self.raw, self.raw_mirror_note) {
            out.push_str(&format!("raw client: mirror skipped: {note}\n"));
        }
        if let Some(note) = &self.raw_note {
            out.push_str(&format!("raw client: skipped: {note}\n"));
        }
        out
    }
}

fn format_number(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A small workload for the report tests.
#[cfg(test)]
fn test_workload() -> Workload {
    Workload {
        events: 10,
        size: 100,
        producers: 1,
        batch: 10,
        partitions: 1,
        latency_events: 0,
        latency_rate: 1,
        phase_timeout: Duration::from_secs(1),
        recv_batch: 10,
        mirror: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_spreads_the_rate_over_ticks() {
        assert_eq!(pacing(2000), (Duration::from_millis(1), 2));
        assert_eq!(pacing(100), (Duration::from_millis(10), 1));
        assert_eq!(pacing(1500).1, 2);
    }

    #[test]
    fn ratios_divide_evhub_by_raw() {
        let w = test_workload();
        let evhub = Metrics {
            produce_events_per_s: 970.0,
            consume_batch_events_per_s: Some(1500.0),
            mirror_events_per_s: Some(1200.0),
            mirror_cpu_us_per_event: Some(3.0),
            ..Metrics::default()
        };
        let raw = Metrics {
            produce_events_per_s: 1000.0,
            consume_events_per_s: 2000.0,
            mirror_events_per_s: Some(1600.0),
            mirror_cpu_us_per_event: Some(2.0),
            ..Metrics::default()
        };
        let report = Report {
            backend: "kafka",
            raw_client: Some(raw_kafka::CLIENT),
            workload: &w,
            rounds: 1,
            evhub,
            raw: Some(raw),
            raw_note: None,
            raw_mirror_note: None,
            evhub_runs: &[],
            raw_runs: &[],
        };
        let ratio = |f| report.ratio(f, f);
        assert_eq!(ratio("produce_events_per_s"), Some(0.97));
        assert_eq!(ratio("consume_events_per_s"), Some(0.0));
        // Both evhub consume phases are compared with the one raw consume phase.
        assert_eq!(
            report.ratio("consume_batch_events_per_s", "consume_events_per_s"),
            Some(0.75)
        );
        assert_eq!(ratio("latency_p50_ms"), None);
        assert_eq!(ratio("mirror_events_per_s"), Some(0.75));
        assert_eq!(ratio("mirror_cpu_us_per_event"), Some(1.5));
        let text = report.render();
        let row = text
            .lines()
            .find(|l| l.starts_with("produce events/s"))
            .unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2..], ["970.0", "1000", "0.970"], "{text}");
        let batch_row = text
            .lines()
            .find(|l| l.starts_with("consume (recv_batch) events/s"))
            .unwrap_or_default();
        assert!(batch_row.trim_end().ends_with("0.750"), "{text}");
        let row = |label: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_default();
            line[label.len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(row("mirror events/s"), ["1200", "1600", "0.750"], "{text}");
        assert_eq!(
            row("mirror CPU µs/event"),
            ["3.000", "2.000", "1.500", "(lower", "is", "better)"],
            "{text}"
        );
        // The acceptance figure: evhub mirror / evhub recv_batch consume; raw: mirror / recv.
        assert!(
            text.lines().any(|l| l
                == "mirror / consume: evhub 0.800 (mirror events/s / consume (recv_batch) events/s); raw: mirror / consume (recv) 0.800"),
            "{text}"
        );
        let v = report.to_json();
        assert_eq!(v["ratio"]["mirror_events_per_s"], 0.75);
        assert_eq!(v["ratio"]["mirror_cpu_us_per_event"], 1.5);
        assert_eq!(v["mirror_vs_consume_batch"], 0.8);
        assert_eq!(v["raw_mirror_vs_consume"], 0.8);
        assert_eq!(v["evhub"]["mirror_events_per_s"], 1200.0);
        assert_eq!(v["raw_mirror_skipped"], Value::Null);
        assert_eq!(v["ratio"]["produce_events_per_s"], 0.97);
        assert_eq!(
            v["ratio"]["consume_batch_events_per_s_vs_consume_events_per_s"],
            0.75
        );
        assert_eq!(v["raw_client"], raw_kafka::CLIENT);
    }
}

#[cfg(test)]
mod mirror_report_tests {
    use super::*;

    fn workload() -> Workload {
        test_workload()
    }

    /// Event Hubs: the raw client ran but has no mirror; memory: no raw client at all.
    #[test]
    fn mirror_without_a_raw_mirror() {
        let w = workload();
        let evhub = Metrics {
            consume_batch_events_per_s: Some(1000.0),
            mirror_events_per_s: Some(950.0),
            ..Metrics::default()
        };
        let raw = Metrics {
            consume_events_per_s: 1000.0,
            ..Metrics::default()
        };
        let report = Report {
            backend: "eventhubs",
            raw_client: Some(raw_eventhubs::CLIENT),
            workload: &w,
            rounds: 1,
            evhub,
            raw: Some(raw),
            raw_note: None,
            raw_mirror_note: Some(raw_eventhubs::NO_MIRROR),
            evhub_runs: &[],
            raw_runs: &[],
        };
        let text = report.render();
        let row = text
            .lines()
            .find(|l| l.starts_with("mirror events/s"))
            .unwrap_or_default();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>()[2..],
            ["950.0", "-", "-"],
            "{text}"
        );
        assert!(
            text.contains(
                "mirror / consume: evhub 0.950 (mirror events/s / consume (recv_batch) events/s)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("; raw:"), "{text}");
        assert!(
            text.contains(&format!(
                "raw client: mirror skipped: {}",
                raw_eventhubs::NO_MIRROR
            )),
            "{text}"
        );
        let v = report.to_json();
        assert_eq!(v["mirror_vs_consume_batch"], 0.95);
        assert_eq!(v["raw_mirror_vs_consume"], Value::Null);
        assert_eq!(v["raw"]["mirror_events_per_s"], Value::Null);
        assert_eq!(v["ratio"]["mirror_events_per_s"], Value::Null);
        assert_eq!(v["raw_mirror_skipped"], raw_eventhubs::NO_MIRROR);
        assert_eq!(
            v["workload"]["mirror"]["batch"],
            PipelineBuilder::DEFAULT_BATCH_SIZE
        );

        // No raw client: the evhub rows alone; with --no-mirror no acceptance line.
        let report = Report {
            backend: "memory",
            raw_client: None,
            raw: None,
            raw_mirror_note: None,
            evhub: Metrics::default(),
            ..report
        };
        let text = report.render();
        assert!(
            text.lines().any(|l| l.starts_with("mirror events/s")),
            "{text}"
        );
        assert!(!text.contains("mirror / consume"), "{text}");
        assert_eq!(report.to_json()["mirror_vs_consume_batch"], Value::Null);
    }
}
