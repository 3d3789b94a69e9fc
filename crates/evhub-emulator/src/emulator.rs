//! The library entry point: build, start, administer and stop an emulator.

use crate::{
    broker::Broker,
    config::{EmulatorConfig, FsyncPolicy, HubConfig, Limits, SasKey, TlsConfig, DEFAULT_KEY_NAME},
    connection::build_acceptor,
    error::{EmulatorError, Result},
    hub::HubRegistry,
    readers::ReaderRegistry,
    sas, server,
    storage::{MemoryBudget, StorageOptions},
    tls,
};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Entry point: `Emulator::builder()...start().await`.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// A builder with the default configuration (127.0.0.1:5672, no hubs,
    /// SAS checks on with the default key).
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
}

/// Configures an emulator before it starts.
#[derive(Debug, Default, Clone)]
pub struct EmulatorBuilder {
    config: EmulatorConfig,
    extra_groups: Vec<(String, String)>,
}

impl EmulatorBuilder {
    /// Replaces the whole configuration (e.g. one loaded from a file).
    pub fn config(mut self, config: EmulatorConfig) -> Self {
        self.config = config;
        self
    }

    /// Plain AMQP listen address; port 0 picks a free port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.config.bind = addr;
        self
    }

    /// Listen on 127.0.0.1 with this port; 0 picks a free port.
    pub fn port(mut self, port: u16) -> Self {
        self.config.bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        self
    }

    /// Adds a hub with `partitions` partitions and the `$Default` group.
    pub fn hub(mut self, name: impl Into<String>, partitions: u32) -> Self {
        self.config.hubs.push(HubConfig::new(name, partitions));
        self
    }

    /// Adds a hub with explicit consumer groups.
    pub fn hub_config(mut self, hub: HubConfig) -> Self {
        self.config.hubs.push(hub);
        self
    }

    /// Adds a consumer group to a hub added with [`hub`](Self::hub).
    pub fn consumer_group(mut self, hub: impl Into<String>, group: impl Into<String>) -> Self {
        self.extra_groups.push((hub.into(), group.into()));
        self
    }

    /// Adds a shared access key; without any, the default key is used.
    pub fn key(mut self, name: impl Into<String>, key: impl Into<String>) -> Self {
        self.config.keys.push(SasKey::new(name, key));
        self
    }

    /// Accept any CBS token (and any SASL PLAIN credentials).
    pub fn no_auth(mut self, no_auth: bool) -> Self {
        self.config.no_auth = no_auth;
        self
    }

    /// Keep events in append-only files under `dir` so a restart keeps them.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Keep at most `events` events per partition.
    pub fn retention_events(mut self, events: u64) -> Self {
        self.config.retention_events = Some(events);
        self
    }

    /// Drop events older than `age`.
    pub fn retention_age(mut self, age: Duration) -> Self {
        self.config.retention_age_secs = Some(age.as_secs().max(1));
        self
    }

    /// Keep at most `bytes` bytes of events per partition.
    pub fn retention_bytes(mut self, bytes: u64) -> Self {
        self.config.retention_bytes = Some(bytes);
        self
    }

    /// Size at which a segment file is closed and a new one started.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.config.segment_bytes = bytes;
        self
    }

    /// When appends reach the disk (with [`data_dir`](Self::data_dir)).
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.config.fsync = policy;
        self
    }

    /// Event bytes kept in memory across all partitions.
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.config.max_memory_bytes = bytes;
        self
    }

    /// Bounds on connections, sessions, links, credit, auth time and hubs.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Allow a non-loopback bind with the default key or without auth.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.config.insecure = insecure;
        self
    }

    /// Serve TLS only (needs [`tls`](Self::tls)).
    pub fn tls_only(mut self, tls_only: bool) -> Self {
        self.config.tls_only = tls_only;
        self
    }

    /// Create unknown hubs on first reference with `partitions` partitions.
    pub fn auto_create_hubs(mut self, partitions: u32) -> Self {
        self.config.auto_create_hubs = Some(partitions);
        self
    }

    /// Largest accepted message or batch in bytes (default 1 MiB).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Also listen for TLS connections.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Host name used in [`EmulatorHandle::connection_string`].
    pub fn advertised_host(mut self, host: impl Into<String>) -> Self {
        self.config.advertised_host = Some(host.into());
        self
    }

    /// Validates the configuration, opens storage, binds the listeners and
    /// starts serving. Returns once the sockets accept connections.
    pub async fn start(mut self) -> Result<EmulatorHandle> {
        for (hub, group) in std::mem::take(&mut self.extra_groups) {
            let entry = self
                .config
                .hubs
                .iter_mut()
                .find(|h| h.name.eq_ignore_ascii_case(&hub))
                .ok_or_else(|| EmulatorError::UnknownHub(hub.clone()))?;
            entry.consumer_groups.push(group);
        }
        let config = self.config;
        config.validate()?;
        if config.uses_default_key() && !config.no_auth {
            tracing::warn!(
                key_name = DEFAULT_KEY_NAME,
                "no key configured: the well-known development key is in use; anyone who can \
                 reach this emulator can use it (configure --key NAME=KEY)"
            );
        }
        let storage = StorageOptions {
            retention_events: config.retention_events,
            retention_age: config.retention_age_secs.map(Duration::from_secs),
            retention_bytes: config.retention_bytes,
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
            fsync_interval: Duration::from_millis(config.fsync_interval_ms),
            budget: Arc::new(MemoryBudget::new(config.max_memory_bytes)),
        };
        let hubs = HubRegistry::open(
            &config.hubs,
            config.data_dir.clone(),
            storage,
            config.auto_create_hubs,
            config.limits.max_auto_created_hubs,
        )?;
        let broker = Arc::new(Broker {
            hubs,
            readers: Arc::new(ReaderRegistry::default()),
            keys: config.effective_keys(),
            no_auth: config.no_auth,
            max_message_size: config.max_message_size,
            limits: config.limits.clone(),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            shutdown: CancellationToken::new(),
        });
        let acceptor = Arc::new(build_acceptor(&broker));
        let tasks = TaskTracker::new();

        let listener = if config.tls_only {
            None
        } else {
            Some(bind(config.bind).await?)
        };
        let plain_addr = match &listener {
            Some(listener) => {
                Some(
                    listener
                        .local_addr()
                        .map_err(|source| EmulatorError::Bind {
                            addr: config.bind,
                            source,
                        })?,
                )
            }
            None => None,
        };
        let mut tls_addr = None;
        let mut tls_certificate_pem = None;
        if let Some(tls_config) = &config.tls {
            let setup = tls::build(tls_config)?;
            let tls_listener = bind(tls_config.bind).await?;
            tls_addr = Some(
                tls_listener
                    .local_addr()
                    .map_err(|source| EmulatorError::Bind {
                        addr: tls_config.bind,
                        source,
                    })?,
            );
            tls_certificate_pem = setup.generated_certificate_pem;
            tasks.spawn(server::run_listener(
                tls_listener,
                Some(setup.acceptor),
                acceptor.clone(),
                broker.clone(),
                tasks.clone(),
            ));
        }
        if let Some(listener) = listener {
            tasks.spawn(server::run_listener(
                listener,
                None,
                acceptor,
                broker.clone(),
                tasks.clone(),
            ));
        }
        if config.data_dir.is_some() && config.fsync == FsyncPolicy::Interval {
            tasks.spawn(sync_periodically(
                broker.clone(),
                Duration::from_millis(config.fsync_interval_ms),
            ));
        }
        // validate() guarantees a TLS listener when there is no plain one.
        let (local_addr, scheme) = match (plain_addr, tls_addr) {
            (Some(addr), _) => (addr, "amqp"),
            (None, Some(addr)) => (addr, "amqps"),
            (None, None) => {
                return Err(EmulatorError::Config(
                    "no listener configured (tls_only without tls)".into(),
                ))
            }
        };
        let advertised_host = config.advertised_host.clone().unwrap_or_else(|| {
            if local_addr.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                local_addr.ip().to_string()
            }
        });
        tracing::info!(%local_addr, tls = ?tls_addr, hubs = ?broker.hubs.names(), auth = !config.no_auth, "evhub-emulator listening");
        Ok(EmulatorHandle {
            local_addr,
            scheme,
            tls_addr,
            tls_certificate_pem,
            advertised_host,
            broker,
            tasks,
        })
    }
}

/// Flushes event logs for [`FsyncPolicy::Interval`] until shutdown.
async fn sync_periodically(broker: Arc<Broker>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let broker = broker.clone();
                // File syncs block: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || broker.hubs.sync_due()).await;
            }
            _ = broker.shutdown.cancelled() => break,
        }
    }
}

/// Segment size advertised to clients. `pyamqp` reads its socket's MSS and
/// sets it back, which fails with EINVAL above 32767; on loopback the kernel
/// may report 32768 or more. Advertising a smaller MSS keeps it in range.
const ADVERTISED_MSS: u32 = 16 * 1024;

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let bind_error = |source| EmulatorError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(bind_error)?;
    #[cfg(unix)]
    {
        socket.set_reuse_address(true).map_err(bind_error)?;
        if let Err(error) = socket.set_tcp_mss(ADVERTISED_MSS) {
            tracing::debug!(%error, "could not set the advertised MSS");
        }
    }
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(1024).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    TcpListener::from_std(socket.into()).map_err(bind_error)
}

/// A running emulator. Dropping it stops serving; [`shutdown`](Self::shutdown)
/// also waits for open connections to close.
#[derive(Debug)]
pub struct EmulatorHandle {
    local_addr: SocketAddr,
    scheme: &'static str,
    tls_addr: Option<SocketAddr>,
    tls_certificate_pem: Option<String>,
    advertised_host: String,
    broker: Arc<Broker>,
    tasks: TaskTracker,
}

impl EmulatorHandle {
    /// Address of the plain AMQP listener (with the real port when 0 was
    /// asked); with `tls_only`, the TLS listener's.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Address of the TLS listener, if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// PEM of the generated self-signed certificate, when TLS uses one.
    pub fn tls_certificate_pem(&self) -> Option<&str> {
        self.tls_certificate_pem.as_deref()
    }

    /// `amqp://<ip>:<port>` (`amqps://` with `tls_only`), the value for the
    /// Rust SDK's `with_custom_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// Host name without port, the Rust SDK's `fully_qualified_namespace`.
    pub fn host(&self) -> &str {
        &self.advertised_host
    }

    /// The first configured key (or the default key).
    pub fn key(&self) -> &SasKey {
        &self.broker.keys[0]
    }

    /// A connection string for `hub` with `UseDevelopmentEmulator=true`, which
    /// the Python SDK follows to this plain AMQP port. (The Rust SDK ignores
    /// the port; pair it with `with_custom_endpoint(handle.endpoint())`.)
    pub fn connection_string(&self, hub: &str) -> String {
        connection_string(
            &self.advertised_host,
            self.local_addr.port(),
            self.key(),
            hub,
        )
    }

    /// A SAS token for `resource` signed with the first key, valid for `ttl`.
    pub fn sas_token(&self, resource: &str, ttl: Duration) -> String {
        let expires = crate::clock::now_seconds() + ttl.as_secs() as i64;
        sas::generate(resource, self.key(), expires)
    }

    /// Creates a hub at runtime.
    pub fn create_hub(&self, name: &str, partitions: u32) -> Result<()> {
        self.broker
            .hubs
            .create(&HubConfig::new(name, partitions))
            .map(|_| ())
    }

    /// Adds a consumer group to an existing hub; `Ok(false)` if it existed.
    pub fn create_consumer_group(&self, hub: &str, group: &str) -> Result<bool> {
        self.broker.hubs.add_consumer_group(hub, group)
    }

    /// Names of all hubs, sorted.
    pub fn hub_names(&self) -> Vec<String> {
        self.broker.hubs.names()
    }

    /// Stops accepting, closes connections and waits (at most 5 s) for them.
    pub async fn shutdown(self) {
        self.broker.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        tracing::info!("evhub-emulator stopped");
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.broker.shutdown.cancel();
    }
}

/// Builds an emulator connection string.
pub fn connection_string(host: &str, port: u16, key: &SasKey, hub: &str) -> String {
    format!(
        "Endpoint=sb://{host}:{port}/;SharedAccessKeyName={};SharedAccessKey={};UseDevelopmentEmulator=true;EntityPath={hub}",
        key.name, key.key
    )
}
