//! Loading a [`Config`] from files, strings, URLs and the environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Config, EventHubsConfig, EventHubsKafkaConfig, KafkaConfig, MemoryConfig};
use crate::error::{Error, Result};

/// Environment variable holding a config URL.
pub const ENV_URL: &str = "EVHUB_URL";
/// Environment variable holding the path of a TOML or JSON config file.
pub const ENV_CONFIG_FILE: &str = "EVHUB_CONFIG";
/// Environment variable selecting the backend when keys come from the environment.
pub const ENV_BACKEND: &str = "EVHUB_BACKEND";

impl Config {
    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        // Only the message: toml's own Display quotes the offending line, which may hold a secret.
        toml::from_str(text)
            .map_err(|e| Error::config(format!("invalid TOML config: {}", e.message().trim())))
    }

    /// Parses JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::config(format!("invalid JSON config: {e}")).with_source(e))
    }

    /// Reads a `.toml` or `.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display())).with_source(e)
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_json_str(&text),
            _ => Self::from_toml_str(&text),
        }
    }

    /// Parses a URL:
    ///
    /// - `memory://?default_partitions=8&hubs=orders:4,audit`
    /// - `kafka://user:password@host1:9092,host2:9092/hub?client_id=svc&librdkafka.linger.ms=5`
    /// - `eventhubs-kafka://ns.servicebus.windows.net/hub?credential=default`
    /// - `eventhubs://ns.servicebus.windows.net/hub?credential=default`
    ///
    /// Query keys are the config keys; `librdkafka.<name>` and `checkpoint_store_options.<name>`
    /// fill the pass-through maps. The path names the default hub.
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::config(format!("config URL `{}` has no scheme", redact_url(url)))
        })?;
        let (authority_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = authority_and_path
            .split_once('/')
            .unwrap_or((authority_and_path, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let hub = path.trim_matches('/');
        if !hub.is_empty() {
            pairs.push(("hub".into(), decode(hub)));
        }
        let backend = scheme.to_ascii_lowercase();
        match backend.as_str() {
            "memory" => {
                if !hosts.is_empty() {
                    return Err(Error::config("memory:// URL takes no host"));
                }
            }
            "kafka" => {
                if hosts.is_empty() {
                    return Err(Error::config("kafka:// URL needs host:port"));
                }
                pairs.push(("bootstrap_servers".into(), hosts.to_owned()));
                if let Some(user) = userinfo {
                    let (name, password) = user.split_once(':').unwrap_or((user, ""));
                    pairs.push(("username".into(), decode(name)));
                    if !password.is_empty() {
                        pairs.push(("password".into(), decode(password)));
                    }
                }
            }
            "eventhubs" | "eventhubs-kafka" => {
                if !hosts.is_empty() {
                    pairs.push(("namespace".into(), hosts.to_owned()));
                }
            }
            other => {
                return Err(Error::config(format!(
                    "unknown backend `{other}` in config URL: expected memory, kafka, eventhubs-kafka or eventhubs"
                )))
            }
        }
        if userinfo.is_some() && backend != "kafka" {
            return Err(Error::config(format!(
                "{backend}:// URL takes no user info: use a connection string or credential"
            )));
        }
        Self::from_pairs(&backend, pairs)
    }

    /// Reads the configuration from the process environment:
    /// `EVHUB_CONFIG` (file path), else `EVHUB_URL`, else `EVHUB_BACKEND` plus
    /// `EVHUB_<BACKEND>_<KEY>` variables (e.g. `EVHUB_KAFKA_BOOTSTRAP_SERVERS`).
    pub fn from_env() -> Result<Self> {
        Self::from_env_vars(std::env::vars())
    }

    /// [`Config::from_env`] over an explicit set of variables.
    pub fn from_env_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        if let Some(path) = vars.get(ENV_CONFIG_FILE).filter(|p| !p.is_empty()) {
            return Self::from_file(path);
        }
        if let Some(url) = vars.get(ENV_URL).filter(|u| !u.is_empty()) {
            return Self::from_url(url);
        }
        let backend = vars
            .get(ENV_BACKEND)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "no configuration in the environment: set {ENV_CONFIG_FILE}, {ENV_URL} or {ENV_BACKEND}"
                ))
            })?
            .to_ascii_lowercase();
        let prefix = match backend.as_str() {
            "memory" => "EVHUB_MEMORY_",
            "kafka" => "EVHUB_KAFKA_",
            "eventhubs-kafka" => "EVHUB_EVENTHUBS_KAFKA_",
            "eventhubs" => "EVHUB_EVENTHUBS_",
            other => {
                return Err(Error::config(format!(
                    "unknown backend `{other}` in {ENV_BACKEND}: expected memory, kafka, eventhubs-kafka or eventhubs"
                )))
            }
        };
        let pairs = vars
            .iter()
            .filter(|(k, _)| !(backend == "eventhubs" && k.starts_with("EVHUB_EVENTHUBS_KAFKA_")))
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .map(|key| (key.to_ascii_lowercase(), v.clone()))
            })
            .collect();
        Self::from_pairs(&backend, pairs)
    }

    /// Builds a config from flat `key=value` pairs (URL query, environment).
    fn from_pairs(backend: &str, pairs: Vec<(String, String)>) -> Result<Self> {
        let mut flat = Vec::new();
        let mut maps: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in pairs {
            if let Some(name) = key.strip_prefix("librdkafka.") {
                maps.entry("librdkafka")
                    .or_default()
                    .insert(name.to_owned(), value);
            } else if let Some(name) = key.strip_prefix("checkpoint_store_options.") {
                maps.entry("checkpoint_store_options")
                    .or_default()
                    .insert(name.to_owned(), value);
            } else if let Some(name) = key.strip_prefix("start_positions.") {
                maps.entry("start_positions")
                    .or_default()
                    .insert(name.to_owned(), value);
            } else {
                flat.push((key, value));
            }
        }
        let mut take = |name: &str| -> Result<BTreeMap<String, String>> {
            match maps.remove(name) {
                Some(map) => Ok(map),
                None => Ok(BTreeMap::new()),
            }
        };
        let config = match backend {
            "memory" => Config::Memory(flat_to::<MemoryConfig>(backend, flat)?),
            "kafka" => {
                let mut c = flat_to::<KafkaConfig>(backend, flat)?;
                c.librdkafka.extend(take("librdkafka")?);
                Config::Kafka(c)
            }
            "eventhubs-kafka" => {
                let mut c = flat_to::<EventHubsKafkaConfig>(backend, flat)?;
                c.librdkafka.extend(take("librdkafka")?);
                Config::EventHubsKafka(c)
            }
            _ => {
                let mut c = flat_to::<EventHubsConfig>(backend, flat)?;
                c.checkpoint_store_options
                    .extend(take("checkpoint_store_options")?);
                c.start_positions.extend(take("start_positions")?);
                Config::EventHubs(c)
            }
        };
        if let Some((name, _)) = maps.into_iter().next() {
            return Err(Error::config(format!(
                "backend `{backend}` has no `{name}` options"
            )));
        }
        Ok(config)
    }
}

fn flat_to<T: DeserializeOwned>(backend: &str, pairs: Vec<(String, String)>) -> Result<T> {
    envy::from_iter(pairs).map_err(|e| {
        Error::config(format!("invalid `{backend}` config: {}", describe_envy(&e))).with_source(e)
    })
}

fn describe_envy(e: &envy::Error) -> String {
    match e {
        envy::Error::MissingValue(field) => format!("missing key `{field}`"),
        envy::Error::Custom(msg) => msg.clone(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Hides the password in `scheme://user:password@host` for error messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &url[start + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..start + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaSaslMechanism, OverflowPolicy};
    use crate::position::InitialPosition;

    const KEY: &str = "c3VwZXItc2VjcmV0LWtleS12YWx1ZQ==";

    fn cs() -> String {
        format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY};EntityPath=orders")
    }

    #[test]
    fn toml_memory_with_hubs() {
        let c = Config::from_toml_str(
            r#"
            backend = "memory"
            hubs = ["orders:8", { name = "audit", partitions = 2 }, "plain"]
            overflow = "drop-oldest"
            initial_position = "latest"
            "#,
        )
        .unwrap();
        let Config::Memory(m) = c else {
            panic!("not memory")
        };
        assert_eq!(m.hubs.len(), 3);
        assert_eq!(m.hubs[0].partitions, Some(8));
        assert_eq!(m.hubs[1].name, "audit");
        assert_eq!(m.hubs[2].partitions, None);
        assert_eq!(m.overflow, OverflowPolicy::DropOldest);
        assert_eq!(m.initial_position, InitialPosition::Latest);
    }

    #[test]
    fn toml_kafka_with_passthrough() {
        let c = Config::from_toml_str(
            r#"
            backend = "kafka"
            bootstrap_servers = "127.0.0.1:9092"
            sasl_mechanism = "SCRAM-SHA-512"
            username = "svc"
            password = "pa55word"
            [librdkafka]
            "linger.ms" = "5"
            "sasl.password" = "other-secret"
            "#,
        )
        .unwrap();
        let Config::Kafka(k) = &c else {
            panic!("not kafka")
        };
        assert_eq!(k.sasl_mechanism, Some(KafkaSaslMechanism::ScramSha512));
        assert_eq!(k.librdkafka.get("linger.ms").map(String::as_str), Some("5"));
        assert!(k.idempotence, "idempotence defaults on");
        let debug = format!("{c:?}");
        assert!(!debug.contains("pa55word"), "{debug}");
        assert!(!debug.contains("other-secret"), "{debug}");
        assert!(debug.contains("linger.ms"));
    }

    #[test]
    fn json_eventhubs() {
        let c = Config::from_json_str(&format!(
            r#"{{"backend":"eventhubs","connection_string":"{}","checkpoint_store":"file:///tmp/cp"}}"#,
            cs()
        ))
        .unwrap();
        assert_eq!(c.backend_id(), "eventhubs");
        assert_eq!(c.hub(), Some("orders"));
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml_str(
            "backend = \"kafka\"\nbootstrap_servers = \"x:1\"\nlinger_ms = 5",
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("linger_ms"), "{e}");
        let e = Config::from_json_str(r#"{"backend":"memory","partitons":3}"#).unwrap_err();
        assert!(e.to_string().contains("partitons"), "{e}");
        let e = Config::from_url("memory://?bogus_key=1").unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
        let e = Config::from_env_vars([
            ("EVHUB_BACKEND".to_string(), "kafka".to_string()),
            (
                "EVHUB_KAFKA_BOOTSTRAP_SERVERS".to_string(),
                "h:1".to_string(),
            ),
            (
                "EVHUB_KAFKA_BOOTSTRAP_SERVER".to_string(),
                "typo".to_string(),
            ),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("bootstrap_server"), "{e}");
    }

    #[test]
    fn unknown_backend_and_missing_key() {
        let e = Config::from_toml_str("backend = \"rabbit\"").unwrap_err();
        assert!(e.to_string().contains("rabbit"), "{e}");
        let e = Config::from_toml_str("backend = \"kafka\"").unwrap_err();
        assert!(e.to_string().contains("bootstrap_servers"), "{e}");
        let e = Config::from_url("rabbit://h").unwrap_err();
        assert!(e.to_string().contains("rabbit"), "{e}");
        let e = Config::from_url("no-scheme").unwrap_err();
        assert!(e.to_string().contains("scheme"), "{e}");
    }

    #[test]
    fn url_kafka_with_user_password_and_hub() {
        let c = Config::from_url("kafka://svc:s%40cret@h1:9092,h2:9092/orders?client_id=app&librdkafka.linger.ms=5&initial_position=latest").unwrap();
        let Config::Kafka(k) = &c else {
            panic!("not kafka")
        };
        assert_eq!(k.bootstrap_servers, "h1:9092,h2:9092");
        assert_eq!(k.username.as_deref(), Some("svc"));
        assert_eq!(k.password.as_ref().map(|p| p.expose()), Some("s@cret"));
        assert_eq!(k.client_id.as_deref(), Some("app"));
        assert_eq!(k.librdkafka.get("linger.ms").map(String::as_str), Some("5"));
        assert_eq!(c.hub(), Some("orders"));
        assert_eq!(c.initial_position(), InitialPosition::Latest);
        assert!(!format!("{c:?}").contains("s@cret"));
    }

    #[test]
    fn url_memory_and_eventhubs() {
        let c = Config::from_url(
            "memory://?default_partitions=8&hubs=orders:4,audit&auto_create_hubs=true",
        )
        .unwrap();
        let Config::Memory(m) = c else {
            panic!("not memory")
        };
        assert_eq!(m.default_partitions, 8);
        assert!(m.auto_create_hubs);
        assert_eq!(m.hubs[0].partitions, Some(4));
        assert_eq!(m.hubs[1].name, "audit");
        let c = Config::from_url("eventhubs://ns.servicebus.windows.net/orders?credential=default")
            .unwrap();
        let Config::EventHubs(e) = &c else {
            panic!("not eventhubs")
        };
        assert_eq!(e.namespace.as_deref(), Some("ns.servicebus.windows.net"));
        assert_eq!(c.hub(), Some("orders"));
        let e = Config::from_url("memory://?default_partitions=many").unwrap_err();
        assert!(
            e.to_string().contains("default_partitions") || e.to_string().contains("many"),
            "{e}"
        );
        let e = Config::from_url("memory://?librdkafka.linger.ms=1").unwrap_err();
        assert!(e.to_string().contains("librdkafka"), "{e}");
    }

    #[test]
    fn env_selects_backend_and_reads_prefixed_keys() {
        let vars = [
            ("EVHUB_BACKEND", "eventhubs-kafka"),
            ("EVHUB_EVENTHUBS_KAFKA_CONNECTION_STRING", cs().as_str()),
            ("EVHUB_EVENTHUBS_KAFKA_SESSION_TIMEOUT_MS", "10000"),
            ("EVHUB_KAFKA_BOOTSTRAP_SERVERS", "ignored:1"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::from_env_vars(vars).unwrap();
        let Config::EventHubsKafka(k) = &c else {
            panic!("wrong backend")
        };
        assert_eq!(k.session_timeout_ms, 10_000);
        assert!(k.connection_string.is_some());
        assert!(!format!("{c:?}").contains(KEY));

        let c = Config::from_env_vars([
            ("EVHUB_BACKEND".to_string(), "eventhubs".to_string()),
            ("EVHUB_EVENTHUBS_CONNECTION_STRING".to_string(), cs()),
            (
                "EVHUB_EVENTHUBS_KAFKA_SESSION_TIMEOUT_MS".to_string(),
                "1".to_string(),
            ),
        ])
        .unwrap();
        assert_eq!(c.backend_id(), "eventhubs");

        let c =
            Config::from_env_vars([("EVHUB_URL".to_string(), "memory://".to_string())]).unwrap();
        assert_eq!(c.backend_id(), "memory");
        let e = Config::from_env_vars(Vec::new()).unwrap_err();
        assert!(e.to_string().contains("EVHUB_BACKEND"), "{e}");
    }

    #[test]
    fn bad_connection_string_in_config_never_shows_the_key() {
        let bad = format!("Endpoint=sb://h/;SharedAccessKey={KEY}");
        let e = Config::from_json_str(&format!(
            r#"{{"backend":"eventhubs","connection_string":"{bad}"}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("SharedAccessKeyName"), "{e}");
        assert!(!e.to_string().contains(KEY));
        assert!(!format!("{e:?}").contains(KEY));
        let e = Config::from_url("kafka://u:topsecret@/x").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }

    #[test]
    fn redact_url_hides_password() {
        assert_eq!(redact_url("kafka://u:pw@h:1"), "kafka://u:***@h:1");
        assert_eq!(redact_url("memory://"), "memory://");
    }
}
