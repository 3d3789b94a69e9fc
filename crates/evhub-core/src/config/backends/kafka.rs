//! `backend = "kafka"`.

#[allow(unused_imports)]
use super::*;

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
