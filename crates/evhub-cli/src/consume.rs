//! `evhub consume`: a consumer-group member, or one partition reader per partition.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::{
    Backend, Checkpoint, Consumer, ConsumerOptions, ErrorKind, InitialPosition, PartitionId,
    ReaderOptions, ReceivedEvent, StartPosition,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cli::{ConsumeArgs, Format, From};
use crate::error::{CliError, CliResult};
use crate::output::event_json;
use crate::progress;

/// Commit at least this often while events keep arriving.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

type Item = evhub::Result<ReceivedEvent>;

pub async fn run(hub: &Arc<dyn Backend>, name: &str, args: &ConsumeArgs) -> CliResult {
    validate(args)?;
    let (tx, rx) = mpsc::channel::<Item>(1024);
    let mut tasks = JoinSet::new();
    let consumer = match &args.group {
        Some(group) => {
            let mut options = ConsumerOptions::new(group.clone());
            match args.from {
                Some(From::Earliest) => {
                    options = options.with_initial_position(InitialPosition::Earliest);
                }
                Some(From::Latest) => {
                    options = options.with_initial_position(InitialPosition::Latest);
                }
                _ => {}
            }
            let consumer = hub.consumer(name, options).await?;
            let member = consumer.clone();
            tasks.spawn(async move {
                loop {
                    let item = member.recv().await;
                    let stop = matches!(&item, Err(e) if e.kind() == ErrorKind::Closed);
                    if stop || tx.send(item).await.is_err() {
                        break;
                    }
                }
            });
            Some(consumer)
        }
        None => {
            spawn_readers(hub, name, args, &tx, &mut tasks).await?;
            drop(tx);
            None
        }
    };
    let bar = match args.count {
        Some(n) => progress::bar(n, "consuming"),
        None => progress::spinner("consumed"),
    };
    let result = print_events(rx, consumer.as_deref(), args, &bar).await;
    bar.finish_and_clear();
    tasks.abort_all();
    if let Some(consumer) = &consumer {
        let closed = consumer.close().await;
        if result.is_ok() {
            closed?;
        }
    }
    match result {
        // The reader of our output went away (`| head`): a normal way to stop.
        Err(CliError::Io(_, e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn validate(args: &ConsumeArgs) -> CliResult {
    if args.group.is_some() {
        if matches!(args.from, Some(From::Offset(_) | From::Time(_))) {
            return Err(CliError::usage(
                "--from offset:N and time:T read partitions directly: drop --group",
            ));
        }
        if !args.partitions.is_empty() {
            return Err(CliError::usage(
                "--partition selects partitions for partition readers: drop --group",
            ));
        }
        if args.end {
            return Err(CliError::usage(
                "--end works with partition readers only: drop --group",
            ));
        }
    } else if args.commit {
        return Err(CliError::usage("--commit needs --group"));
    }
    Ok(())
}

async fn spawn_readers(
    hub: &Arc<dyn Backend>,
    name: &str,
    args: &ConsumeArgs,
    tx: &mpsc::Sender<Item>,
    tasks: &mut JoinSet<()>,
) -> CliResult {
    let properties = hub.hub_properties(name).await?;
    let partitions: Vec<PartitionId> = if args.partitions.is_empty() {
        properties.partitions.clone()
    } else {
        for p in &args.partitions {
            if !properties.partitions.contains(p) {
                return Err(CliError::usage(format!(
                    "hub `{name}` has no partition {p} (partitions: {:?})",
                    properties.partitions
                )));
            }
        }
        args.partitions.clone()
    };
    let start = match args.from.clone().unwrap_or(From::Earliest) {
        From::Earliest => StartPosition::Earliest,
        From::Latest => StartPosition::Latest,
        From::Offset(n) => StartPosition::Offset(n),
        From::Time(t) => StartPosition::Time(t),
    };
    for partition in partitions {
        // With --end: the last offset to read, or nothing to read at all.
        let last = if args.end {
            let props = hub.partition_properties(name, partition).await?;
            let last = props.end_offset - 1;
            let nothing = props.is_empty()
                || match &start {
                    StartPosition::Latest => true,
                    StartPosition::Offset(n) | StartPosition::After(n) => *n > last,
                    StartPosition::Time(t) => props.last_enqueued_at.is_some_and(|l| l < *t),
                    StartPosition::Earliest => false,
                };
            if nothing {
                continue;
            }
            Some(last)
        } else {
            None
        };
        let reader = hub
            .partition_reader(name, ReaderOptions::new(partition, start.clone()))
            .await?;
        let tx = tx.clone();
        tasks.spawn(async move {
            loop {
                let item = reader.recv().await;
                let reached_end = matches!((&item, last), (Ok(e), Some(l)) if e.offset >= l);
                let closed = matches!(&item, Err(e) if e.kind() == ErrorKind::Closed);
                if closed || tx.send(item).await.is_err() || reached_end {
                    break;
                }
            }
            let _ = reader.close().await;
        });
    }
    Ok(())
}

async fn print_events(
    mut rx: mpsc::Receiver<Item>,
    consumer: Option<&dyn Consumer>,
    args: &ConsumeArgs,
    bar: &indicatif::ProgressBar,
) -> CliResult {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    // Ctrl-C stops reading; what was printed is still flushed and committed, and the group
    // member leaves cleanly.
    let (interrupt, mut interrupted) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt.send(true);
        }
    });
    let result = read_loop(&mut rx, consumer, args, bar, deadline, &mut interrupted).await;
    watcher.abort();
    result
}

async fn read_loop(
    rx: &mut mpsc::Receiver<Item>,
    consumer: Option<&dyn Consumer>,
    args: &ConsumeArgs,
    bar: &indicatif::ProgressBar,
    deadline: Option<Instant>,
    interrupted: &mut tokio::sync::watch::Receiver<bool>,
) -> CliResult {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut pending: BTreeMap<(String, PartitionId), Checkpoint> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let mut received = 0u64;
    loop {
        if args.count.is_some_and(|n| received >= n) || *interrupted.borrow() {
            break;
        }
        // Nothing more ready: make what was printed visible (and committed) before waiting.
        let item = match rx.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(&mut out)?;
                commit(consumer, &mut pending).await?;
                last_commit = Instant::now();
                let now = Instant::now();
                let mut wait = args.idle.unwrap_or(Duration::MAX);
                if let Some(d) = deadline {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                let next = tokio::select! {
                    next = tokio::time::timeout(wait, rx.recv()) => next,
                    _ = interrupted.wait_for(|stop| *stop) => break,
                };
                match next {
                    Ok(item) => item,
                    Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                        return match args.count {
                            Some(n) => Err(evhub::Error::timeout(format!(
                                "received {received} of {n} events within {}",
                                humantime::format_duration(args.timeout.unwrap_or_default())
                            ))
                            .into()),
                            None => Ok(()),
                        };
                    }
                    Err(_idle) => break,
                }
            }
        };
        let Some(item) = item else { break };
        let event = item?;
        write_event(&mut out, &event, args.format)?;
        received += 1;
        bar.inc(1);
        if args.commit {
            pending.insert((event.hub.to_string(), event.partition), event.checkpoint());
            if last_commit.elapsed() >= COMMIT_EVERY {
                flush(&mut out)?;
                commit(consumer, &mut pending).await?;
                last_commit = Instant::now();
            }
        }
    }
    flush(&mut out)?;
    commit(consumer, &mut pending).await?;
    Ok(())
}

async fn commit(
    consumer: Option<&dyn Consumer>,
    pending: &mut BTreeMap<(String, PartitionId), Checkpoint>,
) -> CliResult {
    if let Some(consumer) = consumer {
        for (_, checkpoint) in std::mem::take(pending) {
            consumer.commit(&checkpoint).await?;
        }
    }
    Ok(())
}

fn write_event(out: &mut impl Write, event: &ReceivedEvent, format: Format) -> CliResult {
    let result = match format {
        Format::Raw => out
            .write_all(&event.payload)
            .and_then(|()| out.write_all(b"\n")),
        Format::Json => serde_json::to_writer(&mut *out, &event_json(event))
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n")),
    };
    result.map_err(output_error)
}

fn flush(out: &mut impl Write) -> CliResult {
    out.flush().map_err(output_error)
}

fn output_error(e: std::io::Error) -> CliError {
    CliError::Io("cannot write output".into(), e)
}
