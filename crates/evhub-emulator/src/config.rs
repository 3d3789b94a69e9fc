//! Emulator configuration: hubs, keys, listeners, storage. Loaded from a TOML
//! or JSON file, from command-line flags, or built in code.

use crate::error::{EmulatorError, Result};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
};

/// The consumer group every hub has.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// Largest message accepted by default: 1 MiB, like the Standard tier.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1024 * 1024;

/// Partition count of hubs created without an explicit count.
pub const DEFAULT_PARTITION_COUNT: u32 = 4;

/// Key name used when no key is configured.
pub const DEFAULT_KEY_NAME: &str = "RootManageSharedAccessKey";

/// Key value used when no key is configured (the value Microsoft's emulator uses).
pub const DEFAULT_KEY_VALUE: &str = "SAS_KEY_VALUE";

/// Default total of event bytes kept in memory across all partitions.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Default size at which a segment file is closed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// When appended events are flushed to disk (with a data directory).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Every append is on disk before the sender gets its outcome (default):
    /// an acknowledged event survives a crash of the process or the machine.
    #[default]
    Always,
    /// Appends are flushed at most `fsync_interval_ms` later: a machine crash
    /// may lose that window of acknowledged events (a process crash does not).
    Interval,
    /// The operating system decides; fastest.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = EmulatorError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "never" => Ok(Self::Never),
            other => Err(EmulatorError::Config(format!(
                "fsync must be always, interval or never, got {other:?}"
            ))),
        }
    }
}

/// Bounds on what clients can make the emulator hold. Every field has a safe
/// default; `0` is not accepted for any of them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open connections (plain and TLS together); more are closed at once.
    pub max_connections: usize,
    /// Sessions one connection may have open.
    pub max_sessions_per_connection: usize,
    /// Links one session may have open.
    pub max_links_per_session: usize,
    /// Seconds a connection may stay open without having put a valid token
    /// on `$cbs` (not applied with `no_auth`).
    pub auth_timeout_secs: u64,
    /// Hubs `auto_create_hubs` may create in total.
    pub max_auto_created_hubs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_sessions_per_connection: 64,
            max_links_per_session: 64,
            auth_timeout_secs: 60,
            max_auto_created_hubs: 64,
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<()> {
        let fields = [
            ("max_connections", self.max_connections as u64),
            (
                "max_sessions_per_connection",
                self.max_sessions_per_connection as u64,
            ),
            ("max_links_per_session", self.max_links_per_session as u64),
            ("auth_timeout_secs", self.auth_timeout_secs),
            ("max_auto_created_hubs", self.max_auto_created_hubs as u64),
        ];
        for (name, value) in fields {
            if value == 0 {
                return Err(EmulatorError::Config(format!(
                    "limits.{name} must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

/// Full emulator configuration.
///
/// Every field has a default, so a config file only lists what it changes.
/// Unknown keys in a file are an error rather than silently ignored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Plain AMQP listener address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Optional TLS listener (TLS directly on the socket, like `amqps`).
    pub tls: Option<TlsConfig>,
    /// Hubs that exist from the start.
    pub hubs: Vec<HubConfig>,
    /// Shared access keys accepted in SAS tokens. Empty means the default key.
    pub keys: Vec<SasKey>,
    /// Accept any CBS token without checking it.
    pub no_auth: bool,
    /// Store events in append-only files under this directory instead of memory.
    pub data_dir: Option<PathBuf>,
    /// Keep at most this many events per partition (oldest dropped first).
    pub retention_events: Option<u64>,
    /// Drop events older than this many seconds.
    pub retention_age_secs: Option<u64>,
    /// Keep at most this many bytes of events per partition.
    pub retention_bytes: Option<u64>,
    /// Close a segment file at this size and start a new one (data dir only).
    pub segment_bytes: u64,
    /// When appends reach the disk (data dir only).
    pub fsync: FsyncPolicy,
    /// Flush interval for [`FsyncPolicy::Interval`], in milliseconds.
    pub fsync_interval_ms: u64,
    /// Event bytes kept in memory across all partitions. With `data_dir`,
    /// older events are read back from disk; without, they are dropped.
    pub max_memory_bytes: u64,
    /// Allow a non-loopback `bind` with the default key or `no_auth`.
    pub insecure: bool,
    /// Serve TLS only: no plain listener (needs `tls`).
    pub tls_only: bool,
    /// Bounds on connections, sessions, links, credit, auth time, hubs.
    pub limits: Limits,
    /// Create an unknown hub on first reference with this many partitions.
    pub auto_create_hubs: Option<u32>,
    /// Largest accepted message (or batch) in bytes; advertised on sender links.
    pub max_message_size: u64,
    /// Host name put in printed connection strings (defaults to the bound IP).
    pub advertised_host: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5672)),
            tls: None,
            hubs: Vec::new(),
            keys: Vec::new(),
            no_auth: false,
            data_dir: None,
            retention_events: None,
            retention_age_secs: None,
            retention_bytes: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 1000,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            insecure: false,
            tls_only: false,
            limits: Limits::default(),
            auto_create_hubs: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            advertised_host: None,
        }
    }
}

/// One Event Hub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Hub name (the entity path).
    pub name: String,
    /// Number of partitions, ids `0..partitions`.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Consumer groups besides `$Default`, which always exists.
    #[serde(default)]
    pub consumer_groups: Vec<String>,
}

fn default_partitions() -> u32 {
    DEFAULT_PARTITION_COUNT
}

impl HubConfig {
    /// A hub with `partitions` partitions and only the `$Default` group.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            consumer_groups: Vec::new(),
        }
    }
}

/// A shared access policy: key name and key. The key never appears in `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SasKey {
    /// Policy name (`SharedAccessKeyName`).
    pub name: String,
    /// Key value (`SharedAccessKey`), used as raw HMAC key bytes.
    pub key: String,
}

impl SasKey {
    /// A key with the given policy name and value.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

impl fmt::Debug for SasKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// TLS listener settings. Without `cert`/`key` a self-signed certificate for
/// `localhost` and `127.0.0.1` is generated at start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// TLS listener address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// PEM certificate chain file.
    pub cert: Option<PathBuf>,
    /// PEM private key file.
    pub key: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5671)),
            cert: None,
            key: None,
        }
    }
}

impl EmulatorConfig {
    /// Reads a config file; `.json` files are JSON, everything else TOML.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| EmulatorError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        let config: Self = parsed.map_err(|message| EmulatorError::ConfigParse {
            path: path.to_path_buf(),
            message,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configured keys, or the default key when none is configured.
    pub fn effective_keys(&self) -> Vec<SasKey> {
        if self.keys.is_empty() {
            vec![SasKey::new(DEFAULT_KEY_NAME, DEFAULT_KEY_VALUE)]
        } else {
            self.keys.clone()
        }
    }

    /// Whether no key is configured, so the well-known default key is used.
    pub fn uses_default_key(&self) -> bool {
        self.keys.is_empty()
    }

    /// A listener on a non-loopback address with the well-known default key
    /// or without auth is open to anyone who can reach it: refused unless
    /// `insecure` is set.
    fn check_exposure(&self) -> Result<()> {
        if self.insecure || !(self.no_auth || self.uses_default_key()) {
            return Ok(());
        }
        let mut addresses = Vec::new();
        if !self.tls_only {
            addresses.push(self.bind);
        }
        if let Some(tls) = &self.tls {
            addresses.push(tls.bind);
        }
        if let Some(exposed) = addresses.iter().find(|a| !a.ip().is_loopback()) {
            let why = if self.no_auth {
                "with no_auth"
            } else {
                "with the well-known default key"
            };
            return Err(EmulatorError::Config(format!(
                "refusing to listen on {exposed} {why}: anyone who can reach it could use it; \
                 configure a key (--key NAME=KEY), bind 127.0.0.1, or pass --insecure"
            )));
        }
        Ok(())
    }

    /// Checks names, counts and sizes.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for hub in &self.hubs {
            validate_hub(&hub.name, hub.partitions)?;
            if !seen.insert(hub.name.to_ascii_lowercase()) {
                return Err(EmulatorError::Config(format!(
                    "hub {:?} is listed twice",
                    hub.name
                )));
            }
            for group in &hub.consumer_groups {
                validate_entity_name("consumer group", group)?;
            }
        }
        for key in &self.keys {
            if key.name.is_empty() || key.key.is_empty() {
                return Err(EmulatorError::Config(
                    "keys need a non-empty name and key".into(),
                ));
            }
        }
        if let Some(count) = self.auto_create_hubs {
            if count == 0 || count > MAX_PARTITIONS {
                return Err(EmulatorError::Config(format!(
                    "auto_create_hubs must be 1..={MAX_PARTITIONS} partitions"
                )));
            }
        }
        if self.max_message_size < 1024 {
            return Err(EmulatorError::Config(
                "max_message_size must be at least 1024 bytes".into(),
            ));
        }
        if self.retention_events == Some(0) {
            return Err(EmulatorError::Config(
                "retention_events must be at least 1".into(),
            ));
        }
        self.limits.validate()?;
        if self.segment_bytes < 4096 {
            return Err(EmulatorError::Config(
                "segment_bytes must be at least 4096".into(),
            ));
        }
        if self.max_memory_bytes < self.max_message_size {
            return Err(EmulatorError::Config(
                "max_memory_bytes must be at least max_message_size".into(),
            ));
        }
        if self.fsync_interval_ms == 0 {
            return Err(EmulatorError::Config(
                "fsync_interval_ms must be at least 1".into(),
            ));
        }
        if self.retention_age_secs == Some(0) || self.retention_bytes == Some(0) {
            return Err(EmulatorError::Config(
                "retention_age_secs and retention_bytes must be at least 1".into(),
            ));
        }
        if self.tls_only && self.tls.is_none() {
            return Err(EmulatorError::Config(
                "tls_only needs a TLS listener (tls / --tls-bind)".into(),
            ));
        }
        self.check_exposure()?;
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(EmulatorError::Config(
                    "TLS needs both a certificate and a key file, or neither".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Highest partition count accepted (Event Hubs Premium/Dedicated allow more,
/// but tests never need it and it bounds memory).
pub const MAX_PARTITIONS: u32 = 1024;

pub(crate) fn validate_hub(name: &str, partitions: u32) -> Result<()> {
    validate_entity_name("hub", name)?;
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(EmulatorError::Config(format!(
            "hub {name:?}: partitions must be 1..={MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

/// Entity names end up in addresses and file names: keep them to the
/// characters Event Hubs allows (letters, digits, `-`, `_`, `.`, `$`).
pub(crate) fn validate_entity_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '$'));
    if ok {
        Ok(())
    } else {
        Err(EmulatorError::Config(format!(
            "invalid {kind} name {name:?}: use letters, digits, '-', '_', '.', '$'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_files_parse_to_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("c.toml");
        std::fs::write(
            &toml_path,
            "bind = \"127.0.0.1:0\"\nno_auth = true\n[[hubs]]\nname = \"h1\"\npartitions = 2\nconsumer_groups = [\"cg\"]\n[[keys]]\nname = \"k\"\nkey = \"v\"\n",
        )
        .unwrap();
        let json_path = dir.path().join("c.json");
        std::fs::write(
            &json_path,
            r#"{"bind":"127.0.0.1:0","no_auth":true,"hubs":[{"name":"h1","partitions":2,"consumer_groups":["cg"]}],"keys":[{"name":"k","key":"v"}]}"#,
        )
        .unwrap();
        let a = EmulatorConfig::from_file(&toml_path).unwrap();
        let b = EmulatorConfig::from_file(&json_path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hubs[0].partitions, 2);
        assert_eq!(a.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn unknown_keys_and_bad_names_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bnd = \"127.0.0.1:0\"\n").unwrap();
        assert!(matches!(
            EmulatorConfig::from_file(&path),
            Err(EmulatorError::ConfigParse { .. })
        ));
        std::fs::write(&path, "[[hubs]]\nname = \"../x\"\n").unwrap();
        assert!(matches!(
            EmulatorConfig::from_file(&path),
            Err(EmulatorError::Config(_))
        ));
    }

    #[test]
    fn exposed_binds_need_a_key_or_insecure() {
        let exposed: SocketAddr = "0.0.0.0:5672".parse().unwrap();
        let mut config = EmulatorConfig {
            bind: exposed,
            ..Default::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("default key"), "{error}");
        config.keys.push(SasKey::new("k", "v"));
        config.validate().unwrap();
        config.no_auth = true;
        assert!(config.validate().is_err());
        config.insecure = true;
        config.validate().unwrap();
        // Loopback is always fine.
        let local = EmulatorConfig {
            no_auth: true,
            ..Default::default()
        };
        local.validate().unwrap();
    }

    #[test]
    fn limits_and_storage_settings_parse_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "fsync = \"interval\"\nretention_age_secs = 60\n[limits]\nmax_connections = 3\n",
        )
        .unwrap();
        let config = EmulatorConfig::from_file(&path).unwrap();
        assert_eq!(config.fsync, FsyncPolicy::Interval);
        assert_eq!(config.limits.max_connections, 3);
        assert_eq!(config.limits.max_links_per_session, 64);
        std::fs::write(&path, "[limits]\nmax_connections = 0\n").unwrap();
        assert!(EmulatorConfig::from_file(&path).is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn key_is_redacted_in_debug() {
        let text = format!("{:?}", SasKey::new("policy", "very-secret"));
        assert!(text.contains("policy"));
        assert!(!text.contains("very-secret"));
    }
}
