//! Takes each partition client the processor hands out and gives it to the pump thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use azure_messaging_eventhubs::EventProcessor;
use evhub_core::PartitionId;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use super::acquisition::{Acquired, Progress};
use super::pump::Job;
use super::state::Shared;

pub(crate) async fn run_dispatcher(
    processor: Arc<EventProcessor>,
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
) {
    loop {
        let client = match processor.next_partition_client().await {
            Ok(client) => client,
            Err(e) => {
                debug!(error = %e, "no more partition clients");
                return;
            }
        };
        let Ok(partition) = client.get_partition_id().parse::<PartitionId>() else {
            warn!(
                partition = client.get_partition_id(),
                "non-numeric partition id"
            );
            continue;
        };
        let generation = shared.next_generation.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(Notify::new());
        let progress = Arc::new(Progress::default());
        if let Ok(mut reading) = shared.reading.lock() {
            let previous = reading.insert(
                partition,
                Acquired {
                    generation,
                    at: Instant::now(),
                    ended: ended.clone(),
                    progress: progress.clone(),
                },
            );
            if let Some(previous) = previous {
                previous.ended.notify_one();
            }
        }
        let job = Job {
            client,
            partition,
            generation,
            ended,
            progress,
        };
        if jobs.send(job).is_err() {
            return;
        }
    }
}
