//! A shared in-process Event Hubs emulator for the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use evhub_core::config::EventHubsConfig;
use evhub_core::{Backend, Error, ErrorKind, Result};
use evhub_emulator::{Emulator, EmulatorHandle};
use evhub_eventhubs::EventHubsBackend;

/// One emulator per test binary. Every `#[tokio::test]` has its own runtime, so the emulator
/// runs on a runtime of its own that lives as long as the process.
pub fn emulator() -> &'static EmulatorHandle {
    &emulator_and_proxy().0
}

/// Address of the latency proxy in front of the emulator.
pub fn proxy_addr() -> SocketAddr {
    emulator_and_proxy().1
}

fn emulator_and_proxy() -> &'static (EmulatorHandle, SocketAddr) {
    static EMULATOR: OnceLock<(EmulatorHandle, SocketAddr)> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
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
                    let proxy = latency_proxy(handle.local_addr(), Duration::from_millis(3))
                        .await
                        .expect("latency proxy binds");
                    tx.send((handle, proxy)).expect("test thread waits");
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
    let key = emulator().key();
    let cs = evhub_emulator::connection_string("127.0.0.1", proxy_addr().port(), key, "unused")
        .parse()
        .expect("emulator connection string parses");
    let mut config = EventHubsConfig::from_connection_string(cs);
    config.checkpoint_store = Some(checkpoint_store.to_owned());
    config.operation_timeout_ms = 30_000;
    fast_balancing(&mut config);
    config
}

/// Like [`config`], connecting straight to the emulator without the latency proxy.
pub fn direct_config(checkpoint_store: &str) -> EventHubsConfig {
    let key = emulator().key();
    let cs = evhub_emulator::connection_string(
        "127.0.0.1",
        emulator().local_addr().port(),
        key,
        "unused",
    )
    .parse()
    .expect("emulator connection string parses");
    let mut config = EventHubsConfig::from_connection_string(cs);
    config.checkpoint_store = Some(checkpoint_store.to_owned());
    config.operation_timeout_ms = 30_000;
    fast_balancing(&mut config);
    config
}

/// Balancing fast enough for tests (Microsoft's defaults are 10 s / 60 s): members settle
/// within seconds, a crashed member's claims expire after 20 s.
pub fn fast_balancing(config: &mut EventHubsConfig) {
    // EVHUB_TEST_DEFAULT_BALANCING=1 runs the suites with Microsoft's defaults instead.
    if std::env::var_os("EVHUB_TEST_DEFAULT_BALANCING").is_some_and(|v| v == "1") {
        return;
    }
    config.load_balancing_interval_ms = 2_000;
    config.partition_ownership_expiration_interval_ms = 20_000;
    config.load_balancing_strategy = evhub_core::config::LoadBalancingStrategy::Greedy;
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

/// A TCP proxy that delays every frame from the emulator to the client by `delay`, without
/// limiting throughput (frames are released at arrival time + delay, in order).
///
/// Why: fe2o3-amqp 0.16.2 (the AMQP client under azure_messaging_eventhubs) registers a sent
/// delivery as unsettled only *after* the transfer frame is queued
/// (`send_payload_with_transfer` in `link/sender_link.rs`). A peer that answers within
/// microseconds, as the in-process emulator does, can settle the delivery before it is
/// registered; the disposition is then dropped and `send` waits forever. Real networks add far
/// more than the few microseconds of that window; the proxy restores such a latency.
pub async fn latency_proxy(target: SocketAddr, delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut up_read, mut up_write) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
                    let _ = up_write.shutdown().await;
                });
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match up_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let due = tokio::time::Instant::now() + delay;
                                if tx.send((due, buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                while let Some((due, chunk)) = rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    if client_write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// A TCP proxy to `target` (with the same small latency as [`latency_proxy`]) whose
/// connections can be dropped: `reset()` drops every open connection and keeps accepting new
/// ones (a network blip); `cut()` also stops accepting (the server is gone).
pub async fn cuttable_proxy(target: SocketAddr) -> std::io::Result<(SocketAddr, Cut)> {
    let inner = latency_proxy(target, Duration::from_millis(3)).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::watch::channel((0u64, false));
    let mut accept_rx = rx.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                changed = accept_rx.changed() => {
                    if changed.is_err() || accept_rx.borrow().1 {
                        break;
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let Ok((mut client, _)) = accepted else { break };
            let mut cut = rx.clone();
            // Only resets after this connection was accepted end it.
            cut.borrow_and_update();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(inner).await else {
                    return;
                };
                tokio::select! {
                    _ = cut.changed() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                }
            });
        }
    });
    Ok((addr, Cut(tx)))
}

/// Controls a [`cuttable_proxy`].
pub struct Cut(tokio::sync::watch::Sender<(u64, bool)>);

impl Cut {
    /// Drops every open connection; new ones are accepted.
    pub fn reset(&self) {
        self.0.send_modify(|(generation, _)| *generation += 1);
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.0.send_modify(|(generation, closed)| {
            *generation += 1;
            *closed = true;
        });
    }
}

/// Like [`config`], through `proxy` instead of the shared latency proxy.
pub fn config_via(proxy: SocketAddr, checkpoint_store: &str) -> EventHubsConfig {
    let key = emulator().key();
    let cs = evhub_emulator::connection_string("127.0.0.1", proxy.port(), key, "unused")
        .parse()
        .expect("emulator connection string parses");
    let mut config = EventHubsConfig::from_connection_string(cs);
    config.checkpoint_store = Some(checkpoint_store.to_owned());
    config.operation_timeout_ms = 10_000;
    fast_balancing(&mut config);
    config
}
