//! Turns the typed evhub configuration into librdkafka properties.
//!
//! Typed keys are applied first, then the `librdkafka` pass-through map, so any librdkafka
//! property can be tuned. Property values never appear in `Debug` output or errors: some of
//! them are passwords.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use evhub_core::config::{
    EventHubsKafkaConfig, KafkaConfig, KafkaSaslMechanism, KafkaSecurityProtocol,
};
use evhub_core::{Capabilities, Error, InitialPosition, Result};
use rdkafka::ClientConfig;

use crate::oauth::TokenSource;

/// Largest event (key + payload + headers) both profiles accept by default. A record of this
/// size plus batch framing fits Kafka's default `message.max.bytes` (1 048 588) and Event
/// Hubs' 1 MB limit.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1_000_000;

/// librdkafka `message.max.bytes` used by the Event Hubs profile: Event Hubs wants the request
/// size below 1 046 528 bytes.
pub const EVENT_HUBS_MESSAGE_MAX_BYTES: usize = 1_046_000;

/// Event Hubs recommends closing idle connections and refreshing metadata after 180 s (its
/// load balancers drop idle connections after 240 s).
const EVENT_HUBS_IDLE_MS: &str = "180000";

/// Everything a backend instance needs to create librdkafka clients.
#[derive(Clone)]
pub struct Settings {
    /// `kafka` or `eventhubs-kafka`.
    pub backend_id: &'static str,
    /// Properties shared by every client (bootstrap, security, timeouts, pass-through).
    properties: BTreeMap<String, String>,
    /// Properties set by the typed config that users may override per client kind.
    producer: BTreeMap<String, String>,
    consumer: BTreeMap<String, String>,
    /// Pass-through map, applied last.
    passthrough: BTreeMap<String, String>,
    /// What the backend supports.
    pub capabilities: Capabilities,
    /// Upper bound for connecting, metadata, admin calls and acknowledgements.
    pub request_timeout: Duration,
    /// Where new consumer groups start.
    pub initial_position: InitialPosition,
    /// Azure AD token source for OAUTHBEARER, if configured.
    pub token_source: Option<Arc<TokenSource>>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys only: values include passwords and connection strings.
        f.debug_struct("Settings")
            .field("backend_id", &self.backend_id)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .field("librdkafka", &self.passthrough.keys().collect::<Vec<_>>())
            .field("capabilities", &self.capabilities)
            .field("request_timeout", &self.request_timeout)
            .field("initial_position", &self.initial_position)
            .field("oauth", &self.token_source.is_some())
            .finish()
    }
}

/// Which kind of client a config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Producer (also used for metadata).
    Producer,
    /// Consumer-group member.
    GroupConsumer,
    /// Partition reader (assign + seek, never commits).
    Reader,
    /// Admin client.
    Admin,
}

impl Settings {
    /// Settings for `backend = "kafka"`.
    pub fn from_kafka(config: &KafkaConfig) -> Result<Self> {
        let mut p = BTreeMap::new();
        let bootstrap = config.bootstrap_servers.trim();
        if bootstrap.is_empty() {
            return Err(Error::config("kafka: `bootstrap_servers` is empty"));
        }
        p.insert("bootstrap.servers".into(), bootstrap.to_owned());
        if let Some(id) = &config.client_id {
            p.insert("client.id".into(), id.clone());
        }
        let has_user = config.username.is_some();
        let protocol = config.security_protocol.unwrap_or(if has_user {
            KafkaSecurityProtocol::SaslSsl
        } else {
            KafkaSecurityProtocol::Plaintext
        });
        p.insert("security.protocol".into(), protocol_name(protocol).into());
        if matches!(
            protocol,
            KafkaSecurityProtocol::SaslPlaintext | KafkaSecurityProtocol::SaslSsl
        ) {
            let mechanism = config.sasl_mechanism.unwrap_or(KafkaSaslMechanism::Plain);
            p.insert("sasl.mechanism".into(), mechanism_name(mechanism).into());
            if mechanism != KafkaSaslMechanism::OAuthBearer {
                let user = config.username.as_deref().ok_or_else(|| {
                    Error::config("kafka: `username` is required for SASL PLAIN/SCRAM")
                })?;
                let password = config.password.as_ref().ok_or_else(|| {
                    Error::config("kafka: `password` is required for SASL PLAIN/SCRAM")
                })?;
                p.insert("sasl.username".into(), user.to_owned());
                p.insert("sasl.password".into(), password.expose().to_owned());
            }
        } else if has_user || config.password.is_some() {
            return Err(Error::config(
                "kafka: `username`/`password` need `security_protocol` sasl_ssl or sasl_plaintext",
            ));
        }
        if let Some(ca) = &config.ssl_ca_location {
            p.insert("ssl.ca.location".into(), ca.display().to_string());
        }
        if config.request_timeout_ms == 0 {
            return Err(Error::config(
                "kafka: `request_timeout_ms` must be positive",
            ));
        }
        let max_event_bytes = config.max_event_bytes.unwrap_or(DEFAULT_MAX_EVENT_BYTES);
        if max_event_bytes == 0 {
            return Err(Error::config("kafka: `max_event_bytes` must be positive"));
        }
        common_timeouts(&mut p, config.request_timeout_ms);

        let mut producer = BTreeMap::new();
        producer.insert("enable.idempotence".into(), config.idempotence.to_string());
        // Room for the record framing around the largest event.
        producer.insert(
            "message.max.bytes".into(),
            (max_event_bytes + 48 * 1024).to_string(),
        );
        producer.insert(
            "message.timeout.ms".into(),
            config.request_timeout_ms.to_string(),
        );
        let mut consumer = BTreeMap::new();
        if let Some(ms) = config.session_timeout_ms {
            consumer.insert("session.timeout.ms".into(), ms.to_string());
        }
        Ok(Self {
            backend_id: "kafka",
            properties: p,
            producer,
            consumer,
            passthrough: checked_passthrough("kafka", &config.librdkafka)?,
            capabilities: Capabilities::minimal(max_event_bytes)
                .with_create_hub(true)
                .with_partition_reader(true)
                .with_seek_by_time(true)
                .with_headers(true)
                .with_binary_keys(true)
                .with_explicit_partition(true)
                .with_idempotence(config.idempotence),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            initial_position: config.initial_position,
            token_source: None,
        })
    }

    /// Settings for `backend = "eventhubs-kafka"`; `credential` overrides the configured Azure
    /// AD credential kind (tests, custom credentials).
    pub fn from_event_hubs(
        config: &EventHubsKafkaConfig,
        credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    ) -> Result<Self> {
        let mut p = BTreeMap::new();
        let namespace_host =
            match (&config.connection_string, &config.namespace) {
                (Some(cs), _) => match cs.port() {
                    // An explicit port names a non-standard endpoint (a test broker): use it as is.
                    Some(port) => format!("{}:{port}", cs.host()),
                    None => format!("{}:9093", cs.host()),
                },
                (None, Some(ns)) => {
                    let ns = ns.trim().trim_end_matches('/');
                    let ns = ns.strip_prefix("sb://").unwrap_or(ns);
                    if ns.is_empty() {
                        return Err(Error::config("eventhubs-kafka: `namespace` is empty"));
                    }
                    if ns.contains(':') {
                        ns.to_owned()
                    } else {
                        format!("{ns}:9093")
                    }
                }
                (None, None) => return Err(Error::config(
                    "eventhubs-kafka: set `connection_string`, or `namespace` with `credential`",
                )),
            };
        let bootstrap = config
            .bootstrap_servers
            .clone()
            .unwrap_or_else(|| namespace_host.clone());
        if bootstrap.trim().is_empty() {
            return Err(Error::config(
                "eventhubs-kafka: `bootstrap_servers` is empty",
            ));
        }
        p.insert("bootstrap.servers".into(), bootstrap);
        p.insert("security.protocol".into(), "SASL_SSL".into());

        let mut token_source = None;
        if let Some(cs) = &config.connection_string {
            if credential.is_some() || config.credential.is_some() {
                return Err(Error::config(
                    "eventhubs-kafka: give either `connection_string` or `credential`, not both",
                ));
            }
            p.insert("sasl.mechanism".into(), "PLAIN".into());
            p.insert("sasl.username".into(), "$ConnectionString".into());
            p.insert("sasl.password".into(), cs.expose().to_owned());
        } else {
            let host = namespace_host
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            let credential = match credential {
                Some(c) => c,
                None => crate::oauth::credential_from_config(config)?,
            };
            p.insert("sasl.mechanism".into(), "OAUTHBEARER".into());
            token_source = Some(Arc::new(TokenSource::new(
                credential,
                format!("https://{host}/.default"),
            )));
        }
        if let Some(ca) = &config.ssl_ca_location {
            p.insert("ssl.ca.location".into(), ca.display().to_string());
        }
        if config.request_timeout_ms == 0 {
            return Err(Error::config(
                "eventhubs-kafka: `request_timeout_ms` must be positive",
            ));
        }
        if !(6_000..=300_000).contains(&config.session_timeout_ms) {
            return Err(Error::config(format!(
                "eventhubs-kafka: `session_timeout_ms` must be within 6000..=300000 (Event Hubs limits), got {}",
                config.session_timeout_ms
            )));
        }
        common_timeouts(&mut p, config.request_timeout_ms);
        p.insert("connections.max.idle.ms".into(), EVENT_HUBS_IDLE_MS.into());
        p.insert("metadata.max.age.ms".into(), EVENT_HUBS_IDLE_MS.into());
        p.insert(
            "topic.metadata.refresh.interval.ms".into(),
            EVENT_HUBS_IDLE_MS.into(),
        );
        p.insert("socket.keepalive.enable".into(), "true".into());

        let mut producer = BTreeMap::new();
        // The Kafka endpoint of Event Hubs has no idempotent producer.
        producer.insert("enable.idempotence".into(), "false".into());
        producer.insert(
            "message.max.bytes".into(),
            EVENT_HUBS_MESSAGE_MAX_BYTES.to_string(),
        );
        producer.insert(
            "message.timeout.ms".into(),
            config.request_timeout_ms.to_string(),
        );
        let mut consumer = BTreeMap::new();
        consumer.insert(
            "session.timeout.ms".into(),
            config.session_timeout_ms.to_string(),
        );
        Ok(Self {
            backend_id: "eventhubs-kafka",
            properties: p,
            producer,
            consumer,
            passthrough: checked_passthrough("eventhubs-kafka", &config.librdkafka)?,
            capabilities: Capabilities::minimal(DEFAULT_MAX_EVENT_BYTES)
                .with_partition_reader(true)
                .with_seek_by_time(true)
                .with_headers(true)
                .with_binary_keys(true)
                .with_explicit_partition(true),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            initial_position: config.initial_position,
            token_source,
        })
    }

    /// The librdkafka configuration for one client of `kind`.
    pub fn client_config(&self, kind: ClientKind) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        match kind {
            ClientKind::Producer => {
                c.set("acks", "all");
                // Same key → same partition as the Java client and the memory backend.
                c.set("partitioner", "murmur2_random");
                for (k, v) in &self.producer {
                    c.set(k, v);
                }
            }
            ClientKind::GroupConsumer | ClientKind::Reader => {
                c.set("enable.auto.commit", "false");
                c.set("enable.auto.offset.store", "false");
                c.set("enable.partition.eof", "false");
                // librdkafka compares the whole consumer queue (all partitions) with
                // `queued.min.messages` (100 000) and, above it, postpones every partition's next
                // fetch by this much (default 1 s): a backlog read at full speed then stalls for
                // a second whenever the queue crosses the mark, although it drains in
                // milliseconds. Re-checking after 10 ms keeps the prefetch bounded just the same.
                c.set("fetch.queue.backoff.ms", "10");
                if kind == ClientKind::GroupConsumer {
                    for (k, v) in &self.consumer {
                        c.set(k, v);
                    }
                }
            }
            ClientKind::Admin => {}
        }
        for (k, v) in &self.passthrough {
            // Producer-only properties would make librdkafka warn on every consumer.
            if kind != ClientKind::Producer && is_producer_only(k) {
                continue;
            }
            c.set(k, v);
        }
        c
    }

    /// A property as it will be sent (for tests and diagnostics; may be a secret).
    pub fn property(&self, kind: ClientKind, key: &str) -> Option<String> {
        self.client_config(kind).get(key).map(str::to_owned)
    }
}

/// Pass-through key that lifts the at-least-once guard rails of the pass-through check:
/// `"evhub.allow_at_most_once" = "true"` in the `librdkafka` map accepts librdkafka settings
/// that commit or store offsets of events the application has not processed. Events can then
/// be lost when a member fails; use it only where that is acceptable.
pub const ALLOW_AT_MOST_ONCE: &str = "evhub.allow_at_most_once";

/// The pass-through map without evhub's own keys; refuses (with a `Config` error naming the
/// key) librdkafka settings that would commit or store offsets of unprocessed events, unless
/// [`ALLOW_AT_MOST_ONCE`] is `"true"`.
fn checked_passthrough(
    backend: &str,
    map: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut map = map.clone();
    let allow = match map.remove(ALLOW_AT_MOST_ONCE).as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Error::config(format!(
                "{backend}: librdkafka `{ALLOW_AT_MOST_ONCE}` must be \"true\" or \"false\""
            )))
        }
    };
    if !allow {
        for (key, value) in &map {
            if let Some(why) = breaks_at_least_once(key, value) {
                return Err(Error::config(format!(
                    "{backend}: librdkafka `{key}` {why}, which loses events when a member fails \
                     (evhub commits only what the application commits); remove it, or set \
                     `{ALLOW_AT_MOST_ONCE}` = \"true\" in the same map to accept that"
                )));
            }
        }
    }
    Ok(map)
}

/// Why a pass-through setting would commit offsets of events the application has not
/// processed, if it would.
fn breaks_at_least_once(key: &str, value: &str) -> Option<&'static str> {
    let enabled = !matches!(value.trim().to_ascii_lowercase().as_str(), "false" | "0");
    match key {
        "enable.auto.commit" | "auto.commit.enable" if enabled => {
            Some("commits offsets in the background, before events are processed")
        }
        "enable.auto.offset.store" if enabled => {
            Some("stores the offset of every event handed out as ready to commit")
        }
        "offset.store.method" if value.trim() != "broker" => {
            Some("keeps checkpoints outside the group coordinator")
        }
        _ => None,
    }
}

fn common_timeouts(p: &mut BTreeMap<String, String>, request_timeout_ms: u64) {
    let ms = request_timeout_ms.to_string();
    p.insert("request.timeout.ms".into(), ms.clone());
    p.insert("socket.connection.setup.timeout.ms".into(), ms);
    // Keep reconnect attempts frequent so a broker that comes back is found quickly.
    p.insert("reconnect.backoff.max.ms".into(), "2000".into());
}

fn is_producer_only(key: &str) -> bool {
    matches!(
        key,
        "linger.ms"
            | "queue.buffering.max.ms"
            | "batch.size"
            | "batch.num.messages"
            | "compression.type"
            | "compression.codec"
            | "acks"
            | "request.required.acks"
            | "enable.idempotence"
            | "message.timeout.ms"
            | "delivery.timeout.ms"
            | "queue.buffering.max.messages"
            | "queue.buffering.max.kbytes"
            | "partitioner"
            | "retries"
            | "message.send.max.retries"
    )
}

fn protocol_name(p: KafkaSecurityProtocol) -> &'static str {
    match p {
        KafkaSecurityProtocol::Plaintext => "PLAINTEXT",
        KafkaSecurityProtocol::Ssl => "SSL",
        KafkaSecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
        KafkaSecurityProtocol::SaslSsl => "SASL_SSL",
    }
}

fn mechanism_name(m: KafkaSaslMechanism) -> &'static str {
    match m {
        KafkaSaslMechanism::Plain => "PLAIN",
        KafkaSaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        KafkaSaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        KafkaSaslMechanism::OAuthBearer => "OAUTHBEARER",
    }
}

#[cfg(test)]
mod tests;
