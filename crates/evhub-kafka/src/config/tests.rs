use super::*;
use evhub_core::config::Config;
use evhub_core::ErrorKind;

const CS: &str = "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0LWtleS12YWx1ZQ==";

fn eh(toml: &str) -> Result<Settings> {
    match Config::from_toml_str(toml)? {
        Config::EventHubsKafka(c) => Settings::from_event_hubs(&c, None),
        other => panic!("wrong backend {}", other.backend_id()),
    }
}

fn kafka(toml: &str) -> Result<Settings> {
    match Config::from_toml_str(toml)? {
        Config::Kafka(c) => Settings::from_kafka(&c),
        other => panic!("wrong backend {}", other.backend_id()),
    }
}

#[test]
fn event_hubs_profile_from_connection_string() {
    let s = eh(&format!(
        "backend = \"eventhubs-kafka\"\nconnection_string = \"{CS}\""
    ))
    .unwrap();
    let get = |k| s.property(ClientKind::Producer, k);
    assert_eq!(
        get("bootstrap.servers").as_deref(),
        Some("demo.servicebus.windows.net:9093")
    );
    assert_eq!(get("security.protocol").as_deref(), Some("SASL_SSL"));
    assert_eq!(get("sasl.mechanism").as_deref(), Some("PLAIN"));
    assert_eq!(get("sasl.username").as_deref(), Some("$ConnectionString"));
    assert_eq!(get("sasl.password").as_deref(), Some(CS));
    assert_eq!(get("connections.max.idle.ms").as_deref(), Some("180000"));
    assert_eq!(get("metadata.max.age.ms").as_deref(), Some("180000"));
    assert_eq!(get("socket.keepalive.enable").as_deref(), Some("true"));
    assert_eq!(get("request.timeout.ms").as_deref(), Some("60000"));
    assert_eq!(get("enable.idempotence").as_deref(), Some("false"));
    let max: usize = get("message.max.bytes").unwrap().parse().unwrap();
    assert!(max < 1_046_528);
    assert_eq!(
        s.property(ClientKind::GroupConsumer, "session.timeout.ms")
            .as_deref(),
        Some("30000")
    );
    assert!(!s.capabilities.create_hub);
    assert!(!s.capabilities.transactions);
    assert!(!s.capabilities.idempotence);
    assert_eq!(s.capabilities.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
    // Debug shows keys only.
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("c2VjcmV0"), "{dbg}");
    assert!(dbg.contains("sasl.password"));
}

#[test]
fn connection_string_port_is_the_bootstrap_port() {
    let cs = CS.replace("demo.servicebus.windows.net/", "127.0.0.1:19093/");
    let s = eh(&format!(
        "backend = \"eventhubs-kafka\"\nconnection_string = \"{cs}\""
    ))
    .unwrap();
    assert_eq!(
        s.property(ClientKind::Admin, "bootstrap.servers")
            .as_deref(),
        Some("127.0.0.1:19093")
    );
}

#[test]
fn session_timeout_out_of_event_hubs_range_is_a_config_error() {
    let e = eh(&format!(
        "backend = \"eventhubs-kafka\"\nconnection_string = \"{CS}\"\nsession_timeout_ms = 1000"
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("session_timeout_ms"), "{e}");
}

#[test]
fn event_hubs_needs_some_auth() {
    let e = eh("backend = \"eventhubs-kafka\"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("connection_string"));
}

#[test]
fn kafka_defaults_and_passthrough_order() {
    let s = kafka(
        "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\n[librdkafka]\n\"linger.ms\" = \"20\"\n\"enable.idempotence\" = \"false\"",
    )
    .unwrap();
    assert_eq!(
        s.property(ClientKind::Producer, "security.protocol")
            .as_deref(),
        Some("PLAINTEXT")
    );
    assert_eq!(
        s.property(ClientKind::Producer, "linger.ms").as_deref(),
        Some("20")
    );
    // Pass-through wins over the typed default.
    assert_eq!(
        s.property(ClientKind::Producer, "enable.idempotence")
            .as_deref(),
        Some("false")
    );
    // Producer-only keys stay off consumers.
    assert_eq!(s.property(ClientKind::GroupConsumer, "linger.ms"), None);
    assert_eq!(
        s.property(ClientKind::GroupConsumer, "enable.auto.commit")
            .as_deref(),
        Some("false")
    );
    assert!(s.capabilities.create_hub && s.capabilities.idempotence);
}

#[test]
fn kafka_sasl_needs_password_and_names_it() {
    let e =
        kafka("backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nusername = \"u\"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("`password`"), "{e}");
    let s = kafka("backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nusername = \"u\"\npassword = \"pw-123\"").unwrap();
    assert_eq!(
        s.property(ClientKind::Producer, "security.protocol")
            .as_deref(),
        Some("SASL_SSL")
    );
    assert_eq!(
        s.property(ClientKind::Producer, "sasl.mechanism")
            .as_deref(),
        Some("PLAIN")
    );
    assert!(!format!("{s:?}").contains("pw-123"));
}

#[test]
fn unknown_typed_key_is_rejected_by_name() {
    let e =
        kafka("backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nlinger_ms = 5").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("linger_ms"), "{e}");
}

#[test]
fn passthrough_that_commits_unprocessed_events_is_refused_by_name() {
    for (key, value) in [
        ("enable.auto.commit", "true"),
        ("enable.auto.offset.store", "true"),
        ("auto.commit.enable", "true"),
        ("offset.store.method", "file"),
    ] {
        let toml = format!(
            "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\n[librdkafka]\n\"{key}\" = \"{value}\""
        );
        let e = kafka(&toml).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{key}");
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        assert!(e.to_string().contains(ALLOW_AT_MOST_ONCE), "{e}");
        let e = eh(&format!(
            "backend = \"eventhubs-kafka\"\nconnection_string = \"{CS}\"\n[librdkafka]\n\"{key}\" = \"{value}\""
        ))
        .unwrap_err();
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        // The documented opt-out lets it through, and is not passed to librdkafka.
        let s = kafka(&format!("{toml}\n\"{ALLOW_AT_MOST_ONCE}\" = \"true\"")).unwrap();
        assert_eq!(
            s.property(ClientKind::GroupConsumer, key).as_deref(),
            Some(value)
        );
        assert_eq!(
            s.property(ClientKind::GroupConsumer, ALLOW_AT_MOST_ONCE),
            None
        );
    }
    // Turning them off (the default) is fine.
    let s = kafka("backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\n[librdkafka]\n\"enable.auto.commit\" = \"false\"").unwrap();
    assert_eq!(
        s.property(ClientKind::GroupConsumer, "enable.auto.commit")
            .as_deref(),
        Some("false")
    );
    let e = kafka(&format!("backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\n[librdkafka]\n\"{ALLOW_AT_MOST_ONCE}\" = \"yes\"")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn empty_bootstrap_is_rejected() {
    let e = kafka("backend = \"kafka\"\nbootstrap_servers = \" \"").unwrap_err();
    assert!(e.to_string().contains("bootstrap_servers"));
}
