//! `evhub pipe`: mirror (or map) one hub into another, possibly on another backend, through an
//! evhub pipeline: at-least-once, per-partition order, retries, optional dead-letter hub.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::pipeline::{
    Decision, Handler, Output, Pipeline, RetryPolicy, ShutdownToken, Stats, StatsSnapshot,
};
use evhub::{async_trait, Backend, Config, ConsumerOptions, Error, HubOptions, ReceivedEvent};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cli::PipeArgs;
use crate::error::{CliError, CliResult};
use crate::target;

/// A backend and hub given as `--from`/`--to`: a URL (`kafka://host:9092/orders`) or a config
/// file path.
pub struct Endpoint {
    pub config: Config,
    pub hub: Option<String>,
}

/// Parses `CONFIG|URL`; its secrets join `secrets` so they are scrubbed from every message.
pub fn endpoint(value: &str, flag: &str, secrets: &mut Vec<String>) -> CliResult<Endpoint> {
    let config = if value.contains("://") {
        secrets.extend(target::early_secrets(Some(value)));
        Config::from_url(value)
    } else {
        Config::from_file(value)
    }
    .map_err(|e| CliError::usage(format!("{flag}: {}", e.message())))?;
    secrets.extend(target::config_secrets(&config));
    let hub = config.hub().map(str::to_owned);
    Ok(Endpoint { config, hub })
}

pub async fn run(args: &PipeArgs, secrets: &mut Vec<String>) -> CliResult {
    let from = endpoint(&args.from, "--from", secrets)?;
    let to = endpoint(&args.to, "--to", secrets)?;
    let mapping = Mapping::parse(&args.map).map_err(CliError::usage)?;
    let from_hub = args.from_hub.clone().or(from.hub).ok_or_else(|| {
        CliError::usage(
            "no source hub: name it in --from (kafka://host:9092/HUB) or pass --from-hub",
        )
    })?;
    let to_hub = args
        .to_hub
        .clone()
        .or(to.hub)
        .unwrap_or_else(|| from_hub.clone());
    let source = target::connect(&from.config).await?;
    let sink = target::connect(&to.config).await?;
    if args.create_hubs {
        let partitions = source.hub_properties(&from_hub).await?.partitions.len() as u32;
        ensure_hub(&sink, &to_hub, partitions).await?;
        if let Some(dlq) = &args.dlq {
            ensure_hub(&sink, dlq, partitions).await?;
        }
    }
    let options = ConsumerOptions::new(args.group.clone()).with_initial_position(args.start);
    let mut builder = Pipeline::builder(source.clone(), &from_hub, &args.group)
        .consumer_options(options)
        .handler(MapHandler {
            mapping,
            keep_partition: args.keep_partitions,
        })
        .sink(to_hub.clone(), sink.producer(&to_hub).await?)
        .retry(RetryPolicy::default().with_max_attempts(args.max_attempts))
        .max_in_flight(args.max_in_flight)
        .batch_size(args.batch)
        .batches_in_flight(args.batches_in_flight);
    if let Some(dlq) = &args.dlq {
        builder = builder.dead_letter(sink.producer(dlq).await?);
    }
    let pipeline = builder.build()?;
    let label = format!("{from_hub} ({}) -> {to_hub} ({})", source.id(), sink.id());
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    let started = Instant::now();
    let stop = Stop {
        count: args.count,
        idle: args.idle,
    };
    let (result, why) = supervise(&stats, &shutdown, task, stop, "pipe").await;
    let summary = stats.snapshot();
    print_summary(&label, &summary, started.elapsed(), why, args.json);
    result.map(|_| ())
}

async fn ensure_hub(backend: &Arc<dyn Backend>, hub: &str, partitions: u32) -> evhub::Result<()> {
    match backend.hub_properties(hub).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == evhub::ErrorKind::NotFound => {
            backend
                .create_hub(hub, HubOptions::with_partitions(partitions.max(1)))
                .await
        }
        Err(e) => Err(e),
    }
}

/// When `supervise` ends the pipeline by itself.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// After this many source events are settled (handled, skipped or dead-lettered).
    pub count: Option<u64>,
    /// After nothing was received for this long and nothing is in flight.
    pub idle: Option<Duration>,
}

/// Runs until the pipeline ends, Ctrl-C/SIGTERM, `--count` or `--idle`; prints a progress line
/// (every second on a terminal, every 10 s otherwise) to stderr. Returns the pipeline's result
/// and why it stopped.
pub async fn supervise(
    stats: &Stats,
    shutdown: &ShutdownToken,
    mut task: JoinHandle<evhub::Result<StatsSnapshot>>,
    stop: Stop,
    name: &str,
) -> (CliResult<StatsSnapshot>, &'static str) {
    let terminal = std::io::stderr().is_terminal();
    let progress_every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut last_progress = Instant::now();
    // Idle time counts from the last event, or from when partitions were first assigned.
    let mut last_received = 0u64;
    let mut idle_since: Option<Instant> = None;
    let mut why = "source closed";
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = &mut signal, if !shutdown.is_shutdown() => {
                why = "interrupted";
                shutdown.shutdown();
            }
            _ = tick.tick() => {
                let s = stats.snapshot();
                if s.received != last_received || (idle_since.is_none() && s.partitions.iter().any(|p| p.owned)) {
                    last_received = s.received;
                    idle_since = Some(Instant::now());
                }
                if !shutdown.is_shutdown() {
                    if stop.count.is_some_and(|n| settled(&s) >= n) {
                        why = "count reached";
                        shutdown.shutdown();
                    } else if stop.idle.is_some_and(|idle| {
                        s.in_flight == 0 && idle_since.is_some_and(|t| t.elapsed() >= idle)
                    }) {
                        why = "idle";
                        shutdown.shutdown();
                    }
                }
                if last_progress.elapsed() >= progress_every {
                    last_progress = Instant::now();
                    let line = progress_line(name, &s);
                    if terminal {
                        eprint!("\r{line}\x1b[K");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
        }
    };
    if terminal {
        eprint!("\r\x1b[K");
    }
    let result = match result {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(e)) => {
            why = "failed";
            Err(CliError::from(e))
        }
        Err(e) => {
            why = "failed";
            Err(CliError::from(Error::new(
                evhub::ErrorKind::Other,
                format!("the pipeline task ended abnormally: {e}"),
            )))
        }
    };
    (result, why)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn settled(s: &StatsSnapshot) -> u64 {
    s.handled + s.skipped + s.dead_lettered
}

fn progress_line(name: &str, s: &StatsSnapshot) -> String {
    let lag = s
        .total_lag()
        .map_or_else(|| "n/a".to_owned(), |l| l.to_string());
    format!(
        "{name}: received {} handled {} produced {} dead-lettered {} retried {} committed {} in-flight {} lag {lag} ({:.0} events/s)",
        s.received, s.handled, s.produced, s.dead_lettered, s.retried, s.committed, s.in_flight,
        s.handled_per_sec()
    )
}

fn print_summary(label: &str, s: &StatsSnapshot, elapsed: Duration, why: &str, json: bool) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        settled(s) as f64 / secs
    } else {
        0.0
    };
    if json {
        let v = serde_json::json!({
            "pipe": label, "stopped": why, "seconds": secs, "events_per_sec": rate,
            "events_per_sec_since_first_event": s.rate_since_first_event(),
            "first_event_after_s": s.first_event_after.map(|d| d.as_secs_f64()),
            "received": s.received, "handled": s.handled, "skipped": s.skipped,
            "produced": s.produced, "retried": s.retried, "dead_lettered": s.dead_lettered,
            "committed": s.committed, "commits_not_owned": s.commits_not_owned,
            "lag": s.total_lag(),
            "stopped_partitions": s.stopped.iter().map(|p| serde_json::json!({
                "partition": p.partition, "offset": p.offset, "error": p.error,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!(
            "pipe {label}: {why} after {secs:.1}s: received {}, handled {}, skipped {}, produced {}, retried {}, dead-lettered {}, commits {} ({rate:.0} events/s overall, {:.0} events/s from the first event)",
            s.received, s.handled, s.skipped, s.produced, s.retried, s.dead_lettered, s.committed,
            s.rate_since_first_event()
        );
    }
}

/// The pipe handler: events unchanged, or JSON payloads mapped field by field.
struct MapHandler {
    mapping: Mapping,
    keep_partition: bool,
}

#[async_trait]
impl Handler for MapHandler {
    async fn handle(&self, event: &ReceivedEvent) -> evhub::Result<Decision> {
        let mut out = event.to_event();
        if let Mapping::Fields(fields) = &self.mapping {
            out.payload = map_payload(fields, &event.payload)?.into();
        }
        if self.keep_partition {
            out.partition = Some(event.partition);
        }
        Ok(Decision::Emit(vec![Output::new(out)]))
    }
}

/// `--map`: `none`, or `out=.path,...` (jq-like paths: `.`, `.a.b`, `.items[0].id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Events unchanged.
    None,
    /// Output field name and the path it is read from.
    Fields(Vec<(String, Vec<Step>)>),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `.name`
    Field(String),
    /// `[n]`
    Index(usize),
}

impl Mapping {
    /// Parses the `--map` value.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        let mut fields = Vec::new();
        for part in spec.split(',') {
            let (name, path) = part
                .split_once('=')
                .ok_or_else(|| format!("--map: `{part}` is not NAME=.path"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("--map: `{part}` has no output field name"));
            }
            fields.push((name.to_owned(), parse_path(path.trim())?));
        }
        Ok(Self::Fields(fields))
    }
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = || format!("--map: `{path}` is not a path like `.`, `.a.b` or `.items[0]`");
    let rest = path.strip_prefix('.').ok_or_else(bad)?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    let mut name = String::new();
    while let Some(c) = chars.next() {
        match c {
            '.' | '[' => {
                if !name.is_empty() {
                    steps.push(Step::Field(std::mem::take(&mut name)));
                } else if c == '.' {
                    return Err(bad());
                }
                if c == '[' {
                    let mut digits = String::new();
                    for d in chars.by_ref() {
                        if d == ']' {
                            break;
                        }
                        digits.push(d);
                    }
                    steps.push(Step::Index(digits.parse().map_err(|_| bad())?));
                    if let Some('.') = chars.peek() {
                        chars.next();
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' => name.push(c),
            _ => return Err(bad()),
        }
    }
    if !name.is_empty() {
        steps.push(Step::Field(name));
    }
    Ok(steps)
}

fn map_payload(fields: &[(String, Vec<Step>)], payload: &[u8]) -> evhub::Result<Vec<u8>> {
    let input: Value = serde_json::from_slice(payload)
        .map_err(|e| Error::invalid_input(format!("--map needs JSON payloads: {e}")))?;
    let mut out = serde_json::Map::new();
    for (name, path) in fields {
        let mut v = &input;
        for step in path {
            v = match step {
                Step::Field(f) => v.get(f.as_str()).unwrap_or(&Value::Null),
                Step::Index(i) => v.get(*i).unwrap_or(&Value::Null),
            };
        }
        out.insert(name.clone(), v.clone());
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| Error::invalid_input(format!("--map output: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mappings_parse_and_apply() {
        assert_eq!(Mapping::parse("none").unwrap(), Mapping::None);
        let Mapping::Fields(f) =
            Mapping::parse("id=.order.id, first=.items[0].sku ,all=.,gone=.missing.x").unwrap()
        else {
            panic!("fields")
        };
        let out = map_payload(
            &f,
            br#"{"order":{"id":7},"items":[{"sku":"a"},{"sku":"b"}]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["first"], "a");
        assert_eq!(v["all"]["order"]["id"], 7);
        assert_eq!(v["gone"], Value::Null);
        let err = map_payload(&f, b"not json").unwrap_err();
        assert_eq!(err.kind(), evhub::ErrorKind::InvalidInput);
        assert!(!err.is_retriable());
        for bad in ["id", "=.a", "id=a", "id=.a..b", "id=.a[x]"] {
            assert!(Mapping::parse(bad).is_err(), "{bad}");
        }
    }
}
