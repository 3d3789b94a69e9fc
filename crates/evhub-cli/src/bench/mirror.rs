//! The mirror phase through evhub: the run's hub copied into a fresh hub by an
//! [`evhub::pipeline::Pipeline`] set up as `evhub pipe --from X --to X` sets it up with
//! its defaults.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use evhub::pipeline::{Decision, Handler, Output, Pipeline, ShutdownToken, StatsSnapshot};
use evhub::{
    async_trait, Backend, ConsumerOptions, ErrorKind, HubOptions, InitialPosition, ReceivedEvent,
};
use tokio::task::JoinHandle;

use super::stats::{Clock, Phase};
use super::{task_failed, within, Workload};
use crate::progress;

/// How often the phase looks at the pipeline's counters (bounds the timing error at the end).
const POLL: Duration = Duration::from_millis(1);
/// How often the phase looks for the first event (only the timeout depends on it).
const POLL_FIRST: Duration = Duration::from_millis(10);

/// `evhub pipe`'s handler with `--map none` (each event unchanged, partition not kept: the
/// forwarding handler), which also starts the phase's CPU clock at its first event. The clock
/// cannot be started by the phase's own task: while the pipeline keeps every runtime worker
/// busy that task may not run until most of the work is done.
struct ClockedForward {
    started: Arc<OnceLock<Clock>>,
}

#[async_trait]
impl Handler for ClockedForward {
    async fn handle(&self, event: &ReceivedEvent) -> evhub::Result<Decision> {
        self.started.get_or_init(Clock::start);
        Ok(Decision::Emit(vec![Output::new(event.to_event())]))
    }
}

/// The hub a run's hub `hub` is mirrored into.
pub fn mirror_hub(hub: &str) -> String {
    format!("{hub}-mirror")
}

/// Mirrors the `events` events of `hub` into a fresh hub [`mirror_hub`] with a pipeline
/// reading as consumer group `group` from the earliest offsets, forwarding every event
/// unchanged (partition not kept) to one sink. Timed from the pipeline's first received event
/// until `events` events are handled (acknowledged by the sink), wall time by the pipeline's
/// own counters, CPU time from the handler's first call; the pipeline is then shut down (drain,
/// commit, leave the group) outside the timing.
pub async fn evhub(
    backend: &Arc<dyn Backend>,
    w: &Workload,
    hub: &str,
    group: &str,
    events: u64,
) -> evhub::Result<Phase> {
    let target = mirror_hub(hub);
    if backend.capabilities().create_hub {
        backend
            .create_hub(&target, HubOptions::with_partitions(w.partitions))
            .await?;
    }
    let sink = backend.producer(&target).await?;
    let started = Arc::new(OnceLock::new());
    let pipeline = Pipeline::builder(backend.clone(), hub, group)
        .consumer_options(
            ConsumerOptions::new(group).with_initial_position(InitialPosition::Earliest),
        )
        .handler(ClockedForward {
            started: started.clone(),
        })
        // Everything else at the pipeline's defaults, which are `evhub pipe`'s.
        .sink("mirror", sink.clone())
        .build()?;
    let stats = pipeline.stats();
    let shutdown = ShutdownToken::new();
    let mut task = tokio::spawn(pipeline.run(shutdown.clone()));
    let bar = progress::bar(events, "evhub mirror");

    // Both waits end early when the pipeline stops by itself (it failed).
    let first = within(w.phase_timeout, "mirror: first event", async {
        loop {
            if let Some(clock) = started.get() {
                return Ok(clock.clone());
            }
            if task.is_finished() {
                return Err(ended_early(&mut task, &stats.snapshot(), events).await);
            }
            tokio::time::sleep(POLL_FIRST).await;
        }
    })
    .await;
    let done = match first {
        Ok(clock) => {
            within(w.phase_timeout, "mirror phase", async {
                loop {
                    let s = stats.snapshot();
                    bar.set_position(s.handled);
                    if s.handled >= events {
                        let busy = s
                            .elapsed
                            .saturating_sub(s.first_event_after.unwrap_or_default());
                        return Ok(clock.phase_with_wall(events, events * w.size as u64, busy));
                    }
                    if task.is_finished() {
                        return Err(ended_early(&mut task, &s, events).await);
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
            .await
        }
        Err(e) => Err(e),
    };
    bar.finish_and_clear();
    shutdown.shutdown();
    let phase = match done {
        Ok(phase) => phase,
        Err(e) => {
            // Stop the pipeline before reporting; its own error (if any) is in `e` already.
            if !task.is_finished() {
                let _ = within(w.phase_timeout, "mirror pipeline shutdown", async {
                    (&mut task).await.map_err(task_failed)?
                })
                .await;
            }
            let _ = sink.close().await;
            return Err(e);
        }
    };
    let summary = within(w.phase_timeout, "mirror pipeline shutdown", async {
        task.await.map_err(task_failed)?
    })
    .await?;
    sink.close().await?;
    if summary.produced < events {
        return Err(evhub::Error::new(
            ErrorKind::Other,
            format!(
                "mirror: {} events handled but only {} acknowledged by the mirror hub `{target}` (expected {events})",
                summary.handled, summary.produced
            ),
        ));
    }
    Ok(phase)
}

/// The error for a pipeline that ended before mirroring `events` events.
async fn ended_early(
    task: &mut JoinHandle<evhub::Result<StatsSnapshot>>,
    seen: &StatsSnapshot,
    events: u64,
) -> evhub::Error {
    match task.await {
        Err(e) => task_failed(e),
        Ok(Err(e)) => {
            evhub::Error::new(e.kind(), format!("mirror pipeline failed: {}", e.message()))
        }
        Ok(Ok(summary)) => evhub::Error::new(
            ErrorKind::Other,
            format!(
                "mirror pipeline ended after {} of {events} events (stopped partitions: {})",
                summary.handled.max(seen.handled),
                summary.stopped.len()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use evhub::pipeline::{PipelineBuilder, RetryPolicy};

    use super::*;
    use crate::cli::{Cli, Command};

    /// The bench mirror is `evhub pipe` with its defaults.
    #[test]
    fn settings_are_the_pipe_defaults() {
        let cli = Cli::try_parse_from([
            "evhub",
            "pipe",
            "--from",
            "memory://",
            "--to",
            "memory://",
            "--group",
            "g",
        ]);
        let Ok(Cli {
            command: Command::Pipe(args),
            ..
        }) = cli
        else {
            panic!("`evhub pipe` did not parse: {cli:?}");
        };
        assert_eq!(args.max_attempts, RetryPolicy::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(args.max_in_flight, PipelineBuilder::DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(args.batch, PipelineBuilder::DEFAULT_BATCH_SIZE);
        assert_eq!(
            args.batches_in_flight,
            PipelineBuilder::DEFAULT_BATCHES_IN_FLIGHT
        );
        assert_eq!(args.start, InitialPosition::Earliest);
        assert_eq!(args.map, "none");
        assert!(!args.keep_partitions);
        assert!(args.dlq.is_none());
    }
}
