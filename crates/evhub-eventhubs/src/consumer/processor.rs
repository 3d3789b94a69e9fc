//! Builds the SDK's `EventProcessor` on a fresh connection and runs its balancer and
//! dispatcher; a member starts one at join and a new one when its connection is beyond repair
//! (see [`super::supervisor`]).

use std::sync::Arc;
use std::time::Duration;

use azure_messaging_eventhubs::models::StartPositions;
use azure_messaging_eventhubs::EventProcessor;
use evhub_core::{InitialPosition, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::options::default_start;
use super::pump::Job;
use super::state::{Item, Shared};
use super::{balancer, dispatcher};
use crate::connector::Connector;
use crate::error::from_hubs;

/// Everything needed to start a processor for the member.
pub(crate) struct Launcher {
    pub connector: Connector,
    pub initial: InitialPosition,
    pub shared: Arc<Shared>,
    pub tx: mpsc::Sender<Item>,
    pub jobs: mpsc::UnboundedSender<Job>,
}

/// A running processor with its balancer and dispatcher tasks.
pub(crate) struct Running {
    processor: Arc<EventProcessor>,
    balancer: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

fn to_azure(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::seconds(30))
}

impl Launcher {
    /// Opens a connection (a new owner id) and starts balancing on it.
    pub async fn launch(&self) -> Result<Running> {
        let shared = &self.shared;
        let (hub, group) = (&*shared.hub, shared.group.as_str());
        let options = &shared.options;
        let client = self.connector.consumer(hub, group).await?;
        let build = async {
            EventProcessor::builder()
                .with_load_balancing_strategy(options.sdk_strategy())
                .with_update_interval(to_azure(options.load_balancing_interval))
                .with_partition_expiration_duration(to_azure(options.ownership_expiration))
                .with_prefetch(options.prefetch)
                .with_start_positions(StartPositions {
                    per_partition: options.start_positions.clone(),
                    default: default_start(self.initial),
                })
                .build(client, shared.store.clone())
                .await
                .map_err(|e| from_hubs(&format!("joining group `{group}` on hub `{hub}`"), e))
        };
        let processor = self
            .connector
            .timed("joining the consumer group", build)
            .await?;
        let balancer = tokio::spawn(balancer::run_balancer(
            processor.clone(),
            shared.clone(),
            self.tx.clone(),
        ));
        let dispatcher = tokio::spawn(dispatcher::run_dispatcher(
            processor.clone(),
            shared.clone(),
            self.jobs.clone(),
        ));
        Ok(Running {
            processor,
            balancer,
            dispatcher,
        })
    }
}

impl Running {
    /// Stops balancing and dispatching; the processor itself is closed by [`Running::close`].
    pub async fn stop(&mut self) {
        let _ = self.processor.shutdown().await;
        self.balancer.abort();
        self.dispatcher.abort();
        let _ = (&mut self.balancer).await;
        let _ = (&mut self.dispatcher).await;
    }

    /// Closes the processor's connection, within `limit`.
    pub async fn close(self, limit: Duration) {
        if let Ok(processor) = Arc::try_unwrap(self.processor) {
            match tokio::time::timeout(limit, processor.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "closing event processor"),
                Err(_) => debug!("closing event processor timed out"),
            }
        }
    }
}
