//! `backend = "eventhubs-kafka"` and `backend = "eventhubs"`, and the Azure credential both use.

#[allow(unused_imports)]
use super::*;

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
