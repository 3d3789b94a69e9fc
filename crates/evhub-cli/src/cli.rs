//! Command-line definition (clap derive). Parsing only: the commands live in `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use evhub::pipeline::{PipelineBuilder, RetryPolicy};

const AFTER_HELP: &str = "\
Backend selection (first match wins):
  --config FILE          TOML or JSON config file (`backend = \"kafka\"` ...)
  --url URL              memory://, kafka://host:9092/hub, eventhubs-kafka://ns/hub, eventhubs://ns/hub
  EVHUB_CONFIG / EVHUB_URL / EVHUB_BACKEND + EVHUB_<BACKEND>_<KEY>   from the environment

Examples:
  echo hello | evhub --url kafka://127.0.0.1:9092 produce --hub orders --key customer-7
  evhub --url kafka://127.0.0.1:9092/orders consume --from earliest --count 10 --format json
  evhub --config prod.toml consume --hub orders --group billing --commit
  evhub --url kafka://127.0.0.1:9092 hubs create orders --partitions 4
  evhub --url kafka://127.0.0.1:9092 hubs orders
  evhub --url memory:// check
  evhub --url kafka://127.0.0.1:9092 bench --events 200000 --size 100 --producers 4 --compare-raw

Exit codes:
  0  success
  1  runtime error (unreachable service, timeout, hub not found, ...)
  2  usage or configuration error (bad flag, bad URL, unknown config key)
  3  `evhub check`: at least one conformance case failed

Errors are printed as one line: `evhub: error: <kind>: <message>` (secrets are never printed).";

/// evhub: produce, consume, inspect and benchmark event hubs on any evhub backend
/// (memory, kafka, eventhubs-kafka, eventhubs).
#[derive(Debug, Parser)]
#[command(name = "evhub", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (TOML, or JSON by `.json` extension).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "url")]
    pub config: Option<PathBuf>,

    /// Config URL, e.g. `kafka://127.0.0.1:9092/orders` or `memory://?hubs=orders:4`.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// Hub (topic / event hub) to work on; defaults to the hub named in the configuration.
    #[arg(long, global = true, value_name = "NAME")]
    pub hub: Option<String>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish lines from stdin or a file, one event per line.
    #[command(after_help = "Examples:
  printf 'a\\nb\\n' | evhub --url kafka://127.0.0.1:9092 produce --hub orders --key k1 --header source=cli
  evhub --url kafka://127.0.0.1:9092/orders produce --file events.txt --batch 500
  printf 'k1:a\\nk2:b\\n' | evhub --url kafka://127.0.0.1:9092/orders produce --key-separator :")]
    Produce(ProduceArgs),
    /// Read events from a consumer group or straight from the partitions, as raw lines or JSON.
    #[command(after_help = "Examples:
  evhub --url kafka://127.0.0.1:9092/orders consume --from earliest --end --format json
  evhub --url kafka://127.0.0.1:9092/orders consume --group billing --count 100 --commit
  evhub --url kafka://127.0.0.1:9092/orders consume --from time:2026-01-01T00:00:00Z --count 5

Without --group, every partition is read by a partition reader from --from (default earliest).
With --group, partitions come from the consumer group; --from earliest|latest sets where
partitions without a checkpoint start.

JSON lines carry hub, partition, offset, time (enqueue time, RFC 3339), key, headers and
payload. Byte fields are UTF-8 text when valid, else base64; `*_encoding` says which.")]
    Consume(ConsumeArgs),
    /// Show hub metadata (partitions, begin/end offsets, last enqueued) or create a hub.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:
  evhub --url kafka://127.0.0.1:9092 hubs orders audit
  evhub --url kafka://127.0.0.1:9092 hubs orders --json
  evhub --url kafka://127.0.0.1:9092 hubs create orders --partitions 8"
    )]
    Hubs(HubsArgs),
    /// Run the conformance suite against the configured backend and print a table.
    #[command(after_help = "Examples:
  evhub --url memory:// check
  evhub --url kafka://127.0.0.1:9092 check --case round_trip --case batch_send
  evhub --url kafka://127.0.0.1:9092 check --json

Cases need hubs created through evhub; on backends that cannot create hubs they are reported
as skipped with the reason. Exit code 3 when any case failed.")]
    Check(CheckArgs),
    /// Benchmark: produce N events with P producers, consume them with a group, mirror them
    /// into another hub, report events/s, MB/s, CPU per event and end-to-end latency;
    /// --compare-raw runs the raw client too.
    #[command(after_help = "Examples:
  evhub --url memory:// bench --events 1000000
  evhub --url kafka://127.0.0.1:9092 bench --events 200000 --size 1024 --producers 4 --compare-raw
  evhub --url kafka://127.0.0.1:9092 bench --compare-raw --rounds 3 --json > result.json

Phases, each timed separately: produce (P producers, send_batch of --batch events, every send
acknowledged), consume (one consumer-group member reads the backlog with recv; group join
excluded), mirror (the backlog copied into a fresh hub <hub>-mirror by the pipeline
`evhub pipe --from X --to X` runs with its defaults, timed from the first event received until
every event is acknowledged by the mirror hub; --no-mirror skips it), latency (producer and
consumer run together at --latency-rate events/s; the send time travels in the first 8 payload
bytes), consume (recv_batch) (a second group reads the backlog again with recv_batch). On
backends that cannot create hubs (eventhubs, where every reader is $Default) the mirror runs
last and also copies the latency events. MB/s counts payload bytes (1 MB = 10^6 bytes).
`mirror / consume` is mirror events/s divided by recv_batch consume events/s.
--compare-raw repeats the same workload on fresh hubs with the raw client (rdkafka
FutureProducer / StreamConsumer for kafka and eventhubs-kafka, with a hand-written
at-least-once mirror; azure_messaging_eventhubs for eventhubs, no raw mirror) and prints
evhub/raw ratios (higher is better for throughput, lower is better for latency and CPU).")]
    Bench(BenchArgs),
    /// Mirror (or map) a hub into another hub, possibly on another backend: at-least-once,
    /// per-partition order, retries, optional dead-letter hub; progress on stderr, summary on
    /// stdout.
    #[command(after_help = "Examples:
  evhub pipe --from kafka://127.0.0.1:9092/orders --to eventhubs.toml --group mirror
  evhub pipe --from kafka://127.0.0.1:9092/orders --to kafka://127.0.0.1:9093 --group mirror \\
      --dlq orders.dlq --create-hubs --idle 10s
  evhub pipe --from prod.toml --from-hub orders --to memory:// --group audit \\
      --map 'id=.order.id,total=.amount,first=.items[0].sku'

--from/--to take a URL or a config file (TOML/JSON). The source is read as consumer group
--group: a source checkpoint is committed only after the sink acknowledged the event, so a
restarted pipe continues where it stopped (events in flight at a crash are sent again).
Retriable errors are retried with backoff (--max-attempts); events that still fail go to
--dlq (on the --to backend) with reason headers, or stop the pipe (exit 1) without it.
Ctrl-C / SIGTERM drain in-flight events, commit and leave the group (exit 0).")]
    Pipe(PipeArgs),
    /// Inspect a dead-letter hub (--hub) or replay its events into their source hub.
    #[command(after_help = "Examples:
  evhub --url kafka://127.0.0.1:9092 dlq --hub orders.dlq list
  evhub --url kafka://127.0.0.1:9092 dlq --hub orders.dlq list --json
  evhub --url kafka://127.0.0.1:9092 dlq --hub orders.dlq replay --reason retries-exhausted

Replay reads the dead-letter hub as consumer group --group (resumable), strips the evhub.dlq.*
headers and sends each event, byte-exact otherwise, to the hub named in its
evhub.dlq.source.hub header (or --to-hub), on the same backend or --to.")]
    Dlq(DlqArgs),
}

/// `evhub produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Read lines from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Partition key for every event.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and payload (lines without SEP get no key).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Header `name=value`; repeatable, order kept.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Send to this partition instead of placing by key.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Events per `send_batch` call; a partial batch is sent when input pauses.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Print where each event was stored (`partition offset`) to stdout.
    #[arg(long)]
    pub print_delivery: bool,
}

/// `evhub consume --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The payload bytes followed by a newline.
    Raw,
    /// One JSON object per event.
    Json,
}

/// `evhub consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Consumer group; without it every partition is read by a partition reader.
    #[arg(long)]
    pub group: Option<String>,
    /// Start position: earliest, latest, offset:N, time:RFC3339 (offset/time need no group).
    #[arg(long, value_name = "POSITION", value_parser = parse_from)]
    pub from: Option<From>,
    /// Only these partitions (repeatable; partition readers only).
    #[arg(long = "partition", value_name = "N")]
    pub partitions: Vec<u32>,
    /// Stop after N events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop at the end offsets seen at start (partition readers only).
    #[arg(long)]
    pub end: bool,
    /// Commit the checkpoint of every printed event (needs --group).
    #[arg(long)]
    pub commit: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// Give up after this long (e.g. `30s`); an error if --count was not reached.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Stop quietly when no event arrived for this long (e.g. `5s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle: Option<Duration>,
}

/// Parsed `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// `earliest`.
    Earliest,
    /// `latest`.
    Latest,
    /// `offset:N`.
    Offset(i64),
    /// `time:RFC3339`.
    Time(std::time::SystemTime),
}

/// `evhub hubs`.
#[derive(Debug, Args)]
pub struct HubsArgs {
    /// `create`.
    #[command(subcommand)]
    pub action: Option<HubsAction>,
    /// Hubs to show; default the configured hub (--hub or the config's `hub`).
    pub names: Vec<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `evhub hubs <action>`.
#[derive(Debug, Subcommand)]
pub enum HubsAction {
    /// Create a hub (backends with the create_hub capability).
    Create {
        /// Hub name.
        name: String,
        /// Partition count.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
    },
}

/// `evhub check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Run only these cases (repeatable); default all.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// How long a case waits for events or a group to settle.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub case_timeout: Duration,
}

/// `evhub bench`.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Events to produce and consume.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Payload size in bytes (at least 16: send time and sequence number).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub size: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
    /// Events per `send_batch` call.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Partitions of the benchmark hubs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Events sent during the latency phase (0 skips it).
    #[arg(long, default_value_t = 5_000)]
    pub latency_events: u64,
    /// Send rate of the latency phase, events per second.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_rate: u64,
    /// Run the same workload through the raw client and print evhub/raw ratios.
    #[arg(long)]
    pub compare_raw: bool,
    /// Skip the mirror phase (the backlog copied into a fresh hub by an `evhub pipe`
    /// pipeline, and by a hand-written raw mirror with --compare-raw on Kafka).
    #[arg(long)]
    pub no_mirror: bool,
    /// Repeat evhub and raw runs alternately this many times; the median is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Upper bound for each phase.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
    pub phase_timeout: Duration,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `evhub pipe`.
#[derive(Debug, Args)]
pub struct PipeArgs {
    /// Source backend: URL (`kafka://127.0.0.1:9092/orders`) or config file.
    #[arg(long, value_name = "CONFIG|URL")]
    pub from: String,
    /// Sink backend: URL or config file.
    #[arg(long, value_name = "CONFIG|URL")]
    pub to: String,
    /// Source hub; default the hub named in --from.
    #[arg(long, value_name = "NAME")]
    pub from_hub: Option<String>,
    /// Sink hub; default the hub named in --to, else the source hub's name.
    #[arg(long, value_name = "NAME")]
    pub to_hub: Option<String>,
    /// Consumer group on the source (where the pipe resumes after a restart).
    #[arg(long)]
    pub group: String,
    /// Dead-letter hub on the --to backend; without it a failing event stops the pipe.
    #[arg(long, value_name = "HUB")]
    pub dlq: Option<String>,
    /// JSON field mapping `out=.path,...` (`.`, `.a.b`, `.items[0]`), or `none`: unchanged.
    #[arg(long, value_name = "MAPPING", default_value = "none")]
    pub map: String,
    /// Where source partitions without a checkpoint start: earliest or latest.
    #[arg(long, value_name = "POSITION", default_value = "earliest")]
    pub start: evhub::InitialPosition,
    /// Keep partition numbers (the sink needs at least as many partitions).
    #[arg(long)]
    pub keep_partitions: bool,
    /// Create the sink hub (and --dlq) with the source's partition count when missing.
    #[arg(long)]
    pub create_hubs: bool,
    /// Attempts per event for retriable errors, the first included.
    #[arg(long, default_value_t = RetryPolicy::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Most source events in flight (backpressure).
    #[arg(long, default_value_t = PipelineBuilder::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_in_flight: usize,
    /// Events per partition batch (one batch to each sink).
    #[arg(long, default_value_t = PipelineBuilder::DEFAULT_BATCH_SIZE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,
    /// Batches per partition queued at the sink while the next ones are read (1: one at a time).
    #[arg(long, default_value_t = PipelineBuilder::DEFAULT_BATCHES_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batches_in_flight: usize,
    /// Stop after this many source events are settled.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when nothing arrived for this long (e.g. `10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle: Option<Duration>,
    /// Summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `evhub dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// `evhub dlq <action>`.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead-letter events with their reason headers (to the end offsets seen at start).
    List {
        /// At most this many events.
        #[arg(long)]
        count: Option<u64>,
        /// JSON lines (the event as `consume --format json` plus a `dead_letter` object).
        #[arg(long)]
        json: bool,
    },
    /// Send dead-letter events back to their source hub.
    Replay(DlqReplayArgs),
}

/// `evhub dlq replay`.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Target backend (URL or config file); default the dead-letter hub's backend.
    #[arg(long, value_name = "CONFIG|URL")]
    pub to: Option<String>,
    /// Target hub for every event, instead of each event's source hub.
    #[arg(long, value_name = "NAME")]
    pub to_hub: Option<String>,
    /// Consumer group on the dead-letter hub (replay resumes where it stopped).
    #[arg(long, default_value = "evhub-dlq-replay")]
    pub group: String,
    /// Only events with this reason: rejected, non-retriable or retries-exhausted.
    #[arg(long)]
    pub reason: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when nothing arrived for this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub idle: Duration,
    /// Summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("header `{s}` is not NAME=VALUE")),
    }
}

fn parse_from(s: &str) -> Result<From, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "earliest" || lower == "beginning" {
        return Ok(From::Earliest);
    }
    if lower == "latest" || lower == "end" {
        return Ok(From::Latest);
    }
    if let Some(n) = s.strip_prefix("offset:") {
        return n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(From::Offset)
            .ok_or_else(|| format!("`{n}` is not a non-negative offset"));
    }
    if let Some(t) = s.strip_prefix("time:") {
        return time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| From::Time(t.into()))
            .map_err(|e| format!("`{t}` is not an RFC 3339 time: {e}"));
    }
    Err(format!(
        "`{s}` is not a position: use earliest, latest, offset:N or time:RFC3339"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn from_positions_parse() {
        assert_eq!(parse_from("earliest").unwrap(), From::Earliest);
        assert_eq!(parse_from("LATEST").unwrap(), From::Latest);
        assert_eq!(parse_from("offset:42").unwrap(), From::Offset(42));
        assert!(parse_from("offset:-1").is_err());
        assert!(parse_from("offset:x").is_err());
        let From::Time(t) = parse_from("time:2026-01-02T03:04:05Z").unwrap() else {
            panic!("not a time")
        };
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_767_323_045);
        assert!(parse_from("time:yesterday").is_err());
        assert!(parse_from("middle").is_err());
    }

    #[test]
    fn headers_parse_keeping_equals_in_value() {
        assert_eq!(
            parse_header("a=b=c").unwrap(),
            ("a".to_owned(), "b=c".to_owned())
        );
        assert!(parse_header("=x").is_err());
        assert!(parse_header("novalue").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
