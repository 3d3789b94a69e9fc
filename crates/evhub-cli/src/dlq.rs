//! `evhub dlq`: inspect a dead-letter hub written by `evhub pipe` / evhub pipelines, and replay
//! its events into their source hub (reason headers removed).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evhub::pipeline::dead_letter::{self, header_text, headers};
use evhub::pipeline::{Decision, Handler, Output, Pipeline, ShutdownToken};
use evhub::{async_trait, Backend, ReaderOptions, ReceivedEvent, StartPosition};

use crate::cli::{DlqAction, DlqArgs, DlqReplayArgs};
use crate::error::{CliError, CliResult};
use crate::output::{event_json, table};
use crate::pipe::{endpoint, supervise, Stop};
use crate::target;

pub async fn run(
    backend: &Arc<dyn Backend>,
    hub: &str,
    args: &DlqArgs,
    secrets: &mut Vec<String>,
) -> CliResult {
    match &args.action {
        DlqAction::List { count, json } => list(backend, hub, *count, *json).await,
        DlqAction::Replay(replay_args) => replay(backend, hub, replay_args, secrets).await,
    }
}

/// Every event of the hub from the beginning to the end offsets seen at start.
async fn read_to_end(
    backend: &Arc<dyn Backend>,
    hub: &str,
    limit: Option<u64>,
) -> CliResult<Vec<ReceivedEvent>> {
    let mut out = Vec::new();
    for partition in backend.hub_properties(hub).await?.partitions {
        let props = backend.partition_properties(hub, partition).await?;
        if props.is_empty() {
            continue;
        }
        let reader = backend
            .partition_reader(hub, ReaderOptions::new(partition, StartPosition::Earliest))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        'read: loop {
            if Instant::now() > deadline {
                let _ = reader.close().await;
                return Err(CliError::from(evhub::Error::timeout(format!(
                    "reading partition {partition} of `{hub}` to offset {}",
                    props.end_offset - 1
                ))));
            }
            for event in reader.recv_batch(1000, Duration::from_millis(500)).await? {
                let last = event.offset >= props.end_offset - 1;
                out.push(event);
                if last || limit.is_some_and(|n| out.len() as u64 >= n) {
                    break 'read;
                }
            }
        }
        let _ = reader.close().await;
        if limit.is_some_and(|n| out.len() as u64 >= n) {
            break;
        }
    }
    Ok(out)
}

async fn list(backend: &Arc<dyn Backend>, hub: &str, count: Option<u64>, json: bool) -> CliResult {
    let events = read_to_end(backend, hub, count).await?;
    let h = |e: &ReceivedEvent, name: &str| header_text(&e.headers, name).unwrap_or_default();
    if json {
        for e in &events {
            let mut v = event_json(e);
            v["dead_letter"] = serde_json::json!({
                "reason": h(e, headers::REASON),
                "error_kind": h(e, headers::ERROR_KIND),
                "error_message": h(e, headers::ERROR_MESSAGE),
                "attempts": h(e, headers::ATTEMPTS).parse::<u64>().ok(),
                "source_hub": h(e, headers::SOURCE_HUB),
                "source_partition": h(e, headers::SOURCE_PARTITION).parse::<u64>().ok(),
                "source_offset": h(e, headers::SOURCE_OFFSET).parse::<i64>().ok(),
                "group": h(e, headers::SOURCE_GROUP),
                "first_failure": h(e, headers::FIRST_FAILURE),
                "last_failure": h(e, headers::LAST_FAILURE),
            });
            println!("{v}");
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let mut message = h(e, headers::ERROR_MESSAGE);
            if message.chars().count() > 60 {
                message = message.chars().take(57).collect::<String>() + "...";
            }
            vec![
                format!("{}/{}", e.partition, e.offset),
                h(e, headers::REASON),
                h(e, headers::ERROR_KIND),
                h(e, headers::ATTEMPTS),
                format!(
                    "{}/{}/{}",
                    h(e, headers::SOURCE_HUB),
                    h(e, headers::SOURCE_PARTITION),
                    h(e, headers::SOURCE_OFFSET)
                ),
                h(e, headers::LAST_FAILURE),
                message,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "at",
                "reason",
                "kind",
                "attempts",
                "source hub/partition/offset",
                "last failure",
                "message"
            ],
            &rows
        )
    );
    println!("{} dead-letter event(s) in `{hub}`", events.len());
    Ok(())
}

/// Replays into the hub named by each event's source header (or `--to-hub`).
struct ReplayHandler {
    to_hub: Option<String>,
    reason: Option<String>,
}

#[async_trait]
impl Handler for ReplayHandler {
    async fn handle(&self, event: &ReceivedEvent) -> evhub::Result<Decision> {
        if let Some(wanted) = &self.reason {
            if header_text(&event.headers, headers::REASON).as_deref() != Some(wanted.as_str()) {
                return Ok(Decision::Skip);
            }
        }
        let hub = match (
            &self.to_hub,
            header_text(&event.headers, headers::SOURCE_HUB),
        ) {
            (Some(hub), _) => hub.clone(),
            (None, Some(hub)) => hub,
            (None, None) => {
                return Err(evhub::Error::invalid_input(format!(
                    "dead-letter event {}/{} has no `{}` header: pass --to-hub",
                    event.partition,
                    event.offset,
                    headers::SOURCE_HUB
                )))
            }
        };
        let original = dead_letter::original_event(&event.to_event());
        Ok(Decision::Emit(vec![Output::to(hub, original)]))
    }
}

async fn replay(
    backend: &Arc<dyn Backend>,
    hub: &str,
    args: &DlqReplayArgs,
    secrets: &mut Vec<String>,
) -> CliResult {
    let target_backend = match &args.to {
        Some(to) => target::connect(&endpoint(to, "--to", secrets)?.config).await?,
        None => backend.clone(),
    };
    // One sink per destination hub: --to-hub, or every source hub named in the dead-letter hub.
    let hubs: BTreeSet<String> = match &args.to_hub {
        Some(h) => [h.clone()].into(),
        None => read_to_end(backend, hub, None)
            .await?
            .iter()
            .filter_map(|e| header_text(&e.headers, headers::SOURCE_HUB))
            .collect(),
    };
    let mut builder = Pipeline::builder(backend.clone(), hub, &args.group)
        .handler(ReplayHandler {
            to_hub: args.to_hub.clone(),
            reason: args.reason.clone(),
        })
        .fail_fast(true);
    for h in &hubs {
        builder = builder.sink(h.clone(), target_backend.producer(h).await?);
    }
    let pipeline = builder.build()?;
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    let stop = Stop {
        count: args.count,
        idle: Some(args.idle),
    };
    let (result, why) = supervise(&stats, &shutdown, task, stop, "dlq replay").await;
    let s = stats.snapshot();
    let targets: Vec<&str> = hubs.iter().map(String::as_str).collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "dead_letter_hub": hub, "targets": targets, "stopped": why,
                "replayed": s.handled, "skipped": s.skipped, "produced": s.produced,
                "committed": s.committed,
            })
        );
    } else {
        println!(
            "dlq replay `{hub}` -> {}: {why}: replayed {}, skipped {}, produced {} (group `{}`)",
            if targets.is_empty() {
                "(nothing)".to_owned()
            } else {
                targets.join(", ")
            },
            s.handled,
            s.skipped,
            s.produced,
            args.group
        );
    }
    result.map(|_| ())
}
