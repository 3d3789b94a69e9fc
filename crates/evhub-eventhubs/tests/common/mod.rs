//! A shared in-process Event Hubs emulator for the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use evhub_core::config::EventHubsConfig;
use evhub_core::{Backend, Error, ErrorKind, Result};
use evhub_emulator::{Emulator, EmulatorHandle};
use evhub_eventhubs::EventHubsBackend;

/// One emulator per test binary. Every `#[tokio::test]` has its own runtime, so the emulator
/// runs on a runtime of its own that lives as long as the process.
pub fn emulator() -> &'static EmulatorHandle {
    static EMULATOR: OnceLock<EmulatorHandle> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("evhub-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                runtime.block_on(async move {
                    // evhub-core accepts only base64 keys, as Azure issues them.
                    let handle = Emulator::builder()
                        .port(0)
                        .key(
                            "RootManageSharedAccessKey",
                            "ZXZodWItZXZlbnRodWJzLXRlc3Qta2V5LW5vdC1hLXNlY3JldA==",
                        )
                        .start()
                        .await
                        .expect("emulator starts");
                    tx.send(handle).expect("test thread waits");
                    std::future::pending::<()>().await;
                });
            })
            .expect("emulator thread");
        rx.recv_timeout(Duration::from_secs(30))
            .expect("emulator started within 30 s")
    })
}

/// Backend config for the emulator: its connection string (UseDevelopmentEmulator=true) and a
/// process-wide in-memory checkpoint store.
pub fn config(checkpoint_store: &str) -> EventHubsConfig {
    let cs = emulator()
        .connection_string("unused")
        .parse()
        .expect("emulator connection string parses");
    let mut config = EventHubsConfig::from_connection_string(cs);
    config.checkpoint_store = Some(checkpoint_store.to_owned());
    config.operation_timeout_ms = 30_000;
    config
}

pub fn create_hub(name: &str, partitions: u32) -> Result<()> {
    emulator()
        .create_hub(name, partitions)
        .map_err(|e| Error::new(ErrorKind::Other, format!("emulator create_hub: {e}")))
}

pub fn create_group(hub: &str, group: &str) -> Result<()> {
    emulator()
        .create_consumer_group(hub, group)
        .map(|_| ())
        .map_err(|e| Error::new(ErrorKind::Other, format!("emulator create group: {e}")))
}

pub async fn backend(checkpoint_store: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        EventHubsBackend::connect(&config(checkpoint_store)).await?,
    ))
}
