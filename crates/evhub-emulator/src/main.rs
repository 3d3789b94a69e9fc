//! `evhub-emulator`: run the Event Hubs emulator from the command line.

use clap::Parser;
use evhub_emulator::{
    Emulator, EmulatorConfig, EmulatorError, FsyncPolicy, HubConfig, SasKey, TlsConfig,
};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

/// A Docker-free Azure Event Hubs AMQP 1.0 emulator.
///
/// Flags override values from --config.
#[derive(Debug, Parser)]
#[command(name = "evhub-emulator", version)]
struct Cli {
    /// TOML or JSON config file (see the crate README).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Plain AMQP listen address.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Port on 127.0.0.1 (0 = any free port); overrides --bind's port.
    #[arg(long)]
    port: Option<u16>,
    /// Hub to create, NAME or NAME:PARTITIONS (repeatable).
    #[arg(long = "hub", value_name = "NAME[:PARTITIONS]")]
    hubs: Vec<String>,
    /// Extra consumer group, HUB:GROUP (repeatable).
    #[arg(long = "consumer-group", value_name = "HUB:GROUP")]
    consumer_groups: Vec<String>,
    /// Shared access key, NAME=KEY (repeatable).
    #[arg(long = "key", value_name = "NAME=KEY")]
    keys: Vec<String>,
    /// Accept any token without checking it.
    #[arg(long)]
    no_auth: bool,
    /// Keep events in append-only files here (survive restarts).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep at most this many events per partition.
    #[arg(long)]
    retention_events: Option<u64>,
    /// Create unknown hubs on first use, with PARTITIONS partitions (default 4).
    #[arg(long, value_name = "PARTITIONS", num_args = 0..=1, default_missing_value = "4", require_equals = true)]
    auto_create_hubs: Option<u32>,
    /// Largest accepted message in bytes.
    #[arg(long)]
    max_message_size: Option<u64>,
    /// Drop events older than this many seconds.
    #[arg(long, value_name = "SECS")]
    retention_age_secs: Option<u64>,
    /// Keep at most this many bytes of events per partition.
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<u64>,
    /// Start a new segment file at this size (with --data-dir).
    #[arg(long, value_name = "BYTES")]
    segment_bytes: Option<u64>,
    /// When appends reach the disk with --data-dir: always (default), interval, never.
    #[arg(long, value_name = "POLICY")]
    fsync: Option<FsyncPolicy>,
    /// Flush interval for --fsync interval.
    #[arg(long, value_name = "MS")]
    fsync_interval_ms: Option<u64>,
    /// Event bytes kept in memory across all partitions (older ones are read
    /// from disk with --data-dir, dropped without).
    #[arg(long, value_name = "BYTES")]
    max_memory_bytes: Option<u64>,
    /// Most open connections.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most sessions per connection.
    #[arg(long, value_name = "N")]
    max_sessions_per_connection: Option<usize>,
    /// Most links per session.
    #[arg(long, value_name = "N")]
    max_links_per_session: Option<usize>,
    /// Close connections that put no valid token on $cbs within this time.
    #[arg(long, value_name = "SECS")]
    auth_timeout_secs: Option<u64>,
    /// Most hubs --auto-create-hubs may create.
    #[arg(long, value_name = "N")]
    max_auto_created_hubs: Option<usize>,
    /// Allow a non-loopback listener with the default key or --no-auth.
    #[arg(long)]
    insecure: bool,
    /// Serve TLS only (no plain listener); needs --tls-bind.
    #[arg(long)]
    tls_only: bool,
    /// Also listen with TLS on this address (e.g. 127.0.0.1:5671).
    #[arg(long, value_name = "ADDR")]
    tls_bind: Option<SocketAddr>,
    /// PEM certificate for TLS (default: generated self-signed).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Host name written into printed connection strings.
    #[arg(long)]
    advertised_host: Option<String>,
    /// Print a connection string per hub once listening.
    #[arg(long)]
    print_connection_string: bool,
    /// Log filter when RUST_LOG is unset (e.g. info, debug, evhub_emulator=trace).
    #[arg(long, default_value = "info")]
    log: String,
}

fn split_pair<'a>(
    value: &'a str,
    separator: char,
    what: &str,
) -> Result<(&'a str, &'a str), EmulatorError> {
    value
        .split_once(separator)
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| {
            EmulatorError::Config(format!(
                "{what} must look like A{separator}B, got {value:?}"
            ))
        })
}

fn build_config(cli: &Cli) -> Result<EmulatorConfig, EmulatorError> {
    let mut config = match &cli.config {
        Some(path) => EmulatorConfig::from_file(path)?,
        None => EmulatorConfig::default(),
    };
    if let Some(bind) = cli.bind {
        config.bind = bind;
    }
    if let Some(port) = cli.port {
        config.bind.set_port(port);
    }
    for hub in &cli.hubs {
        let (name, partitions) = match hub.split_once(':') {
            Some((name, count)) => (
                name,
                count.parse().map_err(|_| {
                    EmulatorError::Config(format!("bad partition count in --hub {hub:?}"))
                })?,
            ),
            None => (
                hub.as_str(),
                evhub_emulator::config::DEFAULT_PARTITION_COUNT,
            ),
        };
        config.hubs.retain(|h| !h.name.eq_ignore_ascii_case(name));
        config.hubs.push(HubConfig::new(name, partitions));
    }
    for pair in &cli.consumer_groups {
        let (hub, group) = split_pair(pair, ':', "--consumer-group")?;
        let entry = config
            .hubs
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case(hub))
            .ok_or_else(|| EmulatorError::UnknownHub(hub.to_string()))?;
        entry.consumer_groups.push(group.to_string());
    }
    for pair in &cli.keys {
        let (name, key) = split_pair(pair, '=', "--key")?;
        config.keys.push(SasKey::new(name, key));
    }
    config.no_auth |= cli.no_auth;
    if cli.data_dir.is_some() {
        config.data_dir = cli.data_dir.clone();
    }
    if cli.retention_events.is_some() {
        config.retention_events = cli.retention_events;
    }
    if cli.auto_create_hubs.is_some() {
        config.auto_create_hubs = cli.auto_create_hubs;
    }
    if let Some(size) = cli.max_message_size {
        config.max_message_size = size;
    }
    if cli.retention_age_secs.is_some() {
        config.retention_age_secs = cli.retention_age_secs;
    }
    if cli.retention_bytes.is_some() {
        config.retention_bytes = cli.retention_bytes;
    }
    if let Some(bytes) = cli.segment_bytes {
        config.segment_bytes = bytes;
    }
    if let Some(policy) = cli.fsync {
        config.fsync = policy;
    }
    if let Some(ms) = cli.fsync_interval_ms {
        config.fsync_interval_ms = ms;
    }
    if let Some(bytes) = cli.max_memory_bytes {
        config.max_memory_bytes = bytes;
    }
    let limits = &mut config.limits;
    if let Some(n) = cli.max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = cli.max_sessions_per_connection {
        limits.max_sessions_per_connection = n;
    }
    if let Some(n) = cli.max_links_per_session {
        limits.max_links_per_session = n;
    }
    if let Some(secs) = cli.auth_timeout_secs {
        limits.auth_timeout_secs = secs;
    }
    if let Some(n) = cli.max_auto_created_hubs {
        limits.max_auto_created_hubs = n;
    }
    config.insecure |= cli.insecure;
    config.tls_only |= cli.tls_only;
    if cli.tls_bind.is_some() || cli.tls_cert.is_some() {
        let mut tls = config.tls.clone().unwrap_or_default();
        if let Some(bind) = cli.tls_bind {
            tls.bind = bind;
        }
        if cli.tls_cert.is_some() {
            tls.cert = cli.tls_cert.clone();
            tls.key = cli.tls_key.clone();
        }
        config.tls = Some::<TlsConfig>(tls);
    }
    if cli.advertised_host.is_some() {
        config.advertised_host = cli.advertised_host.clone();
    }
    config.validate()?;
    Ok(config)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(cli: Cli) -> Result<(), EmulatorError> {
    let config = build_config(&cli)?;
    let handle = Emulator::builder().config(config).start().await?;
    // One parseable line for scripts that start us on port 0.
    println!("evhub-emulator listening on {}", handle.endpoint());
    if let (Some(tls), false) = (handle.tls_addr(), handle.endpoint().starts_with("amqps:")) {
        println!("evhub-emulator listening on amqps://{tls}");
    }
    if cli.print_connection_string {
        for hub in handle.hub_names() {
            println!("{}", handle.connection_string(&hub));
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("evhub-emulator: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A damaged event store gets its own exit code so scripts can
            // tell it from a bad flag.
            let code = match error {
                EmulatorError::CorruptStore { .. } => EXIT_CORRUPT_STORE,
                _ => EXIT_FAILURE,
            };
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("evhub-emulator: {text}");
            ExitCode::from(code)
        }
    }
}

/// Exit code for configuration, bind and I/O errors.
const EXIT_FAILURE: u8 = 1;
/// Exit code when the event store under --data-dir is corrupt.
const EXIT_CORRUPT_STORE: u8 = 3;
