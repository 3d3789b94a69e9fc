//! Per-backend configuration structs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::connection_string::EventHubsConnectionString;
use super::secret::{RedactedMap, Secret};
use crate::position::InitialPosition;

const MIB: usize = 1024 * 1024;

fn default_true() -> bool {
    true
}

/// A hub to create at start-up: `"orders"` or `"orders:8"` (name and partition count), or a
/// table `{ name = "orders", partitions = 8 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    /// Hub name.
    pub name: String,
    /// Partition count; `None` uses the backend default.
    pub partitions: Option<u32>,
}

impl std::str::FromStr for HubSpec {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, partitions) = match s.split_once(':') {
            Some((name, n)) => {
                let n = n
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        crate::Error::config(format!(
                            "hub `{name}`: partition count must be a positive integer, got `{n}`"
                        ))
                    })?;
                (name, Some(n))
            }
            None => (s, None),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(crate::Error::config("hub name is empty"));
        }
        Ok(Self {
            name: name.to_owned(),
            partitions,
        })
    }
}

impl<'de> Deserialize<'de> for HubSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            partitions: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Table(Table),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Repr::Table(t) => Ok(HubSpec {
                name: t.name,
                partitions: t.partitions,
            }),
        }
    }
}

/// What the memory backend does when a partition is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Producers wait until every consumer group committed past the oldest event (backpressure;
    /// nothing is lost). A send that waits longer than `send_timeout_ms` fails with `Timeout`.
    #[default]
    Block,
    /// The oldest event is dropped (retention by count, like a log with a size limit).
    DropOldest,
}

/// `backend = "memory"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Default hub for tools and examples.
    #[serde(default)]
    pub hub: Option<String>,
    /// Hubs created at start-up.
    #[serde(default)]
    pub hubs: Vec<HubSpec>,
    /// Partition count of hubs created without one. Default 4.
    #[serde(default = "MemoryConfig::default_partitions")]
    pub default_partitions: u32,
    /// Create a hub on first use instead of failing with `NotFound`. Default false.
    #[serde(default)]
    pub auto_create_hubs: bool,
    /// Largest event (key + payload + headers). Default 1 MiB, like Event Hubs Standard.
    #[serde(default = "MemoryConfig::default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Events kept per partition. Default 100 000.
    #[serde(default = "MemoryConfig::default_partition_capacity")]
    pub partition_capacity: usize,
    /// What happens when a partition is full. Default `block`.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// How long a blocked send waits for room. Default 30 000 ms.
    #[serde(default = "MemoryConfig::default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// Where new consumer groups start. Default `earliest`.
    #[serde(default)]
    pub initial_position: InitialPosition,
}

impl MemoryConfig {
    fn default_partitions() -> u32 {
        4
    }
    fn default_max_event_bytes() -> usize {
        MIB
    }
    fn default_partition_capacity() -> usize {
        100_000
    }
    fn default_send_timeout_ms() -> u64 {
        30_000
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            hub: None,
            hubs: Vec::new(),
            default_partitions: Self::default_partitions(),
            auto_create_hubs: false,
            max_event_bytes: Self::default_max_event_bytes(),
            partition_capacity: Self::default_partition_capacity(),
            overflow: OverflowPolicy::default(),
            send_timeout_ms: Self::default_send_timeout_ms(),
            initial_position: InitialPosition::default(),
        }
    }
}

/// Kafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS without SASL.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

/// Kafka `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KafkaSaslMechanism {
    /// `PLAIN`.
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    /// `OAUTHBEARER`.
    #[serde(rename = "OAUTHBEARER", alias = "oauthbearer")]
    OAuthBearer,
}

/// `backend = "kafka"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Default hub for tools and examples.
    #[serde(default)]
    pub hub: Option<String>,
    /// Client id reported to the broker.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `security.protocol`; default plaintext, or sasl_ssl when a username is set.
    #[serde(default)]
    pub security_protocol: Option<KafkaSecurityProtocol>,
    /// `sasl.mechanism`; default PLAIN when a username is set.
    #[serde(default)]
    pub sasl_mechanism: Option<KafkaSaslMechanism>,
    /// SASL username.
    #[serde(default)]
    pub username: Option<String>,
    /// SASL password (redacted everywhere).
    #[serde(default)]
    pub password: Option<Secret>,
    /// CA certificate file (PEM) to trust for TLS.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Where new consumer groups start. Default `earliest`.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// Idempotent producer (no duplicates from retries). Default true.
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// Upper bound for connecting, metadata and acknowledgements, in ms. Default 30 000.
    #[serde(default = "KafkaConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Consumer group session timeout, in ms. Default: librdkafka's (45 000).
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
    /// Largest event accepted by the producer; default 1 MiB.
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
    /// librdkafka properties applied after the typed keys (e.g. `linger.ms`).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl KafkaConfig {
    fn default_request_timeout_ms() -> u64 {
        30_000
    }

    /// A config for `bootstrap_servers` with every other key at its default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            hub: None,
            client_id: None,
            security_protocol: None,
            sasl_mechanism: None,
            username: None,
            password: None,
            ssl_ca_location: None,
            initial_position: InitialPosition::default(),
            idempotence: true,
            request_timeout_ms: Self::default_request_timeout_ms(),
            session_timeout_ms: None,
            max_event_bytes: None,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("hub", &self.hub)
            .field("client_id", &self.client_id)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("initial_position", &self.initial_position)
            .field("idempotence", &self.idempotence)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

/// Azure AD credential used instead of a connection string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredentialKind {
    /// `DefaultAzureCredential`-style chain (environment service principal, workload identity,
    /// managed identity, Azure CLI); also what an unset `credential` means. Both Event Hubs
    /// backends build it with `evhub_azure`.
    Default,
    /// Service principal with `tenant_id`, `client_id`, `client_secret`.
    ClientSecret,
    /// Managed identity (optionally user-assigned via `client_id`).
    ManagedIdentity,
    /// The Azure CLI's signed-in account.
    AzureCli,
}

/// `backend = "eventhubs-kafka"`: Event Hubs through its Kafka endpoint.
///
/// Give either `connection_string` (SAS, sent as SASL PLAIN password for user
/// `$ConnectionString`) or `namespace` + `credential` (Azure AD, OAUTHBEARER).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubsKafkaConfig {
    /// Event Hubs connection string (redacted everywhere).
    #[serde(default)]
    pub connection_string: Option<EventHubsConnectionString>,
    /// Fully qualified namespace, e.g. `demo.servicebus.windows.net`, for Azure AD auth.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Azure AD credential kind.
    #[serde(default)]
    pub credential: Option<AzureCredentialKind>,
    /// Tenant for `client-secret`.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Client (application) id for `client-secret` or a user-assigned managed identity.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret for `client-secret` (redacted everywhere).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Default hub for tools and examples (else the connection string's `EntityPath`).
    #[serde(default)]
    pub hub: Option<String>,
    /// Overrides `<namespace>:9093` (local test brokers).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// CA certificate file (PEM) to trust, for test endpoints with private certificates.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Where new consumer groups start. Default `earliest`.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// Upper bound for requests, in ms. Default 60 000 (the value Event Hubs recommends).
    #[serde(default = "EventHubsKafkaConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Consumer group session timeout, in ms (6 000–300 000). Default 30 000.
    #[serde(default = "EventHubsKafkaConfig::default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// librdkafka properties applied after the typed keys.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl EventHubsKafkaConfig {
    fn default_request_timeout_ms() -> u64 {
        60_000
    }
    fn default_session_timeout_ms() -> u64 {
        30_000
    }

    /// A config from a connection string, every other key at its default.
    pub fn from_connection_string(connection_string: EventHubsConnectionString) -> Self {
        Self {
            connection_string: Some(connection_string),
            namespace: None,
            credential: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            hub: None,
            bootstrap_servers: None,
            ssl_ca_location: None,
            initial_position: InitialPosition::default(),
            request_timeout_ms: Self::default_request_timeout_ms(),
            session_timeout_ms: Self::default_session_timeout_ms(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for EventHubsKafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHubsKafkaConfig")
            .field("connection_string", &self.connection_string)
            .field("namespace", &self.namespace)
            .field("credential", &self.credential)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("hub", &self.hub)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("initial_position", &self.initial_position)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

/// `backend = "eventhubs"`: Event Hubs over AMQP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubsConfig {
    /// Event Hubs connection string (redacted everywhere).
    #[serde(default)]
    pub connection_string: Option<EventHubsConnectionString>,
    /// Fully qualified namespace for Azure AD auth.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Azure AD credential kind.
    #[serde(default)]
    pub credential: Option<AzureCredentialKind>,
    /// Tenant for `client-secret`.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Client id for `client-secret` or a user-assigned managed identity.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret (redacted everywhere).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Default hub for tools and examples (else the connection string's `EntityPath`).
    #[serde(default)]
    pub hub: Option<String>,
    /// AMQP endpoint override, e.g. `amqp://127.0.0.1:5672` for an emulator.
    #[serde(default)]
    pub custom_endpoint: Option<String>,
    /// Where consumer-group checkpoints and ownership live: `memory`, or an object-store URL
    /// (`file:///var/lib/evhub`, `az://container/prefix`, `s3://bucket/prefix`, `gs://...`).
    /// Default `memory`.
    #[serde(default)]
    pub checkpoint_store: Option<String>,
    /// Object-store options (account, keys, endpoint) for `checkpoint_store`; secret values are
    /// redacted.
    #[serde(default)]
    pub checkpoint_store_options: BTreeMap<String, String>,
    /// Where new consumer groups start. Default `earliest`.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// Upper bound for one operation, in ms. Default 60 000.
    #[serde(default = "EventHubsConfig::default_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// How often a consumer-group member balances partitions and renews its ownership claims,
    /// in ms (Microsoft's processors: `load_balancing_interval`). Default 10 000.
    #[serde(default = "EventHubsConfig::default_load_balancing_interval_ms")]
    pub load_balancing_interval_ms: u64,
    /// When an ownership claim not renewed for this long counts as abandoned, in ms
    /// (`partition_ownership_expiration_interval`). Default 60 000.
    #[serde(default = "EventHubsConfig::default_partition_ownership_expiration_interval_ms")]
    pub partition_ownership_expiration_interval_ms: u64,
    /// `greedy` claims every partition it may at once; `balanced` one per interval
    /// (`load_balancing_strategy`). Default `greedy`, like Microsoft's Python processor.
    #[serde(default)]
    pub load_balancing_strategy: LoadBalancingStrategy,
    /// Events each partition receiver fetches ahead (`prefetch_count`). Default 300.
    #[serde(default = "EventHubsConfig::default_prefetch_count")]
    pub prefetch_count: u32,
    /// Start position per partition id for partitions without a checkpoint
    /// (`starting_position` per partition): `earliest`, `latest`, `sequence:<n>` (inclusive),
    /// `offset:<service offset>` (exclusive, like Microsoft's processors) or
    /// `time:<RFC 3339>`. Partitions not listed use `initial_position`.
    #[serde(default)]
    pub start_positions: BTreeMap<String, String>,
    /// Namespace written in checkpoint and ownership record names (`<namespace>/<hub>/...`);
    /// default the connection's host. Set it to share a group with a processor that names the
    /// namespace differently: Microsoft's Python SDK keeps the port of an emulator endpoint
    /// (`127.0.0.1:5672`), the other SDKs drop it.
    #[serde(default)]
    pub checkpoint_namespace: Option<String>,
}

/// How a consumer-group member claims partitions (Microsoft's `LoadBalancingStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancingStrategy {
    /// Claim (or steal) every partition needed for a fair share in one pass.
    #[default]
    Greedy,
    /// Claim one partition per load-balancing interval.
    Balanced,
}

impl EventHubsConfig {
    fn default_operation_timeout_ms() -> u64 {
        60_000
    }

    fn default_load_balancing_interval_ms() -> u64 {
        10_000
    }

    fn default_partition_ownership_expiration_interval_ms() -> u64 {
        60_000
    }

    fn default_prefetch_count() -> u32 {
        300
    }

    /// A config from a connection string, every other key at its default.
    pub fn from_connection_string(connection_string: EventHubsConnectionString) -> Self {
        Self {
            connection_string: Some(connection_string),
            namespace: None,
            credential: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            hub: None,
            custom_endpoint: None,
            checkpoint_store: None,
            checkpoint_store_options: BTreeMap::new(),
            initial_position: InitialPosition::default(),
            operation_timeout_ms: Self::default_operation_timeout_ms(),
            load_balancing_interval_ms: Self::default_load_balancing_interval_ms(),
            partition_ownership_expiration_interval_ms:
                Self::default_partition_ownership_expiration_interval_ms(),
            load_balancing_strategy: LoadBalancingStrategy::default(),
            prefetch_count: Self::default_prefetch_count(),
            start_positions: BTreeMap::new(),
            checkpoint_namespace: None,
        }
    }
}

impl fmt::Debug for EventHubsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHubsConfig")
            .field("connection_string", &self.connection_string)
            .field("namespace", &self.namespace)
            .field("credential", &self.credential)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("hub", &self.hub)
            .field("custom_endpoint", &self.custom_endpoint)
            .field("checkpoint_store", &self.checkpoint_store)
            .field(
                "checkpoint_store_options",
                &RedactedMap(&self.checkpoint_store_options),
            )
            .field("initial_position", &self.initial_position)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field(
                "load_balancing_interval_ms",
                &self.load_balancing_interval_ms,
            )
            .field(
                "partition_ownership_expiration_interval_ms",
                &self.partition_ownership_expiration_interval_ms,
            )
            .field("load_balancing_strategy", &self.load_balancing_strategy)
            .field("prefetch_count", &self.prefetch_count)
            .field("start_positions", &self.start_positions)
            .field("checkpoint_namespace", &self.checkpoint_namespace)
            .finish()
    }
}
