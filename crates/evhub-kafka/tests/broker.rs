//! Behaviour on the real broker beyond the conformance suite: at-least-once across crashes and
//! rebalances, bad input (unreachable broker, wrong password, malformed config) and
//! OAUTHBEARER through the token callback.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use base64::Engine;
use common::{broker_or_skip, Broker};
use evhub_conformance::unique_name;
use evhub_core::config::{Config, EventHubsKafkaConfig, KafkaConfig};
use evhub_core::{Backend, Consumer, ConsumerOptions, ErrorKind, Event, HubOptions, ReceivedEvent};
use evhub_kafka::KafkaBackend;

const WAIT: Duration = Duration::from_secs(30);

async fn hub(broker: &Broker, case: &str, partitions: u32) -> (KafkaBackend, String) {
    let backend = broker.admin().await.expect("connect");
    let name = unique_name(case);
    backend
        .create_hub(&name, HubOptions::with_partitions(partitions))
        .await
        .expect("create hub");
    (backend, name)
}

async fn join(broker: &Broker, hub: &str, group: &str) -> Arc<dyn Consumer> {
    KafkaBackend::connect(&broker.kafka_config())
        .await
        .expect("connect")
        .consumer(hub, ConsumerOptions::new(group))
        .await
        .expect("join")
}

async fn recv_n(consumer: &dyn Consumer, n: usize) -> Vec<ReceivedEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(e) => out.push(e.expect("recv")),
            Err(_) => panic!("received {} of {n} events within {WAIT:?}", out.len()),
        }
    }
    out
}

fn text(e: &ReceivedEvent) -> String {
    String::from_utf8_lossy(&e.payload).into_owned()
}

/// A member that is dropped (a crash, no close, no commit) hands its events to the next member;
/// what it had committed is not delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_member_hands_uncommitted_events_to_next_member() {
    let Some(broker) = broker_or_skip("crashed_member_hands_uncommitted_events_to_next_member")
    else {
        return;
    };
    let (backend, hub) = hub(&broker, "crash", 1).await;
    let events = (0..10).map(|i| Event::new(format!("c{i}"))).collect();
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send_batch(events)
        .await
        .unwrap();
    let group = unique_name("crash-g");
    let a = join(&broker, &hub, &group).await;
    let got = recv_n(&*a, 10).await;
    a.commit(&got[3].checkpoint()).await.unwrap();
    drop(got);
    drop(a); // no close: the member must still leave and hand over offsets 4..
    let b = join(&broker, &hub, &group).await;
    let again = recv_n(&*b, 6).await;
    let want: Vec<String> = (4..10).map(|i| format!("c{i}")).collect();
    assert_eq!(again.iter().map(text).collect::<Vec<_>>(), want);
    // Nothing committed is redelivered.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), b.recv())
            .await
            .is_err(),
        "unexpected extra event"
    );
    b.close().await.unwrap();
}

/// Members join and leave while events keep flowing; with commits after each event nothing is
/// lost (duplicates are allowed: at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalance_during_consumption_loses_nothing() {
    let Some(broker) = broker_or_skip("rebalance_during_consumption_loses_nothing") else {
        return;
    };
    let (backend, hub) = hub(&broker, "rebalance", 4).await;
    let group = unique_name("rebalance-g");
    const N: usize = 600;
    let producer = backend.producer(&hub).await.unwrap();
    let send = tokio::spawn(async move {
        for chunk in 0..(N / 20) {
            let batch = (0..20)
                .map(|i| Event::new(format!("r{}", chunk * 20 + i)).with_key(format!("k{i}")))
                .collect();
            producer.send_batch(batch).await.expect("send");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let consume = |member: Arc<dyn Consumer>, stop_after: Option<Duration>| {
        let seen = seen.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let deadline = started + Duration::from_secs(60);
            while Instant::now() < deadline && done.load(Ordering::SeqCst) == 0 {
                if stop_after.is_some_and(|d| started.elapsed() > d) {
                    break;
                }
                let Ok(event) =
                    tokio::time::timeout(Duration::from_millis(200), member.recv()).await
                else {
                    continue;
                };
                let event = event.expect("recv");
                seen.lock().unwrap().push(text(&event));
                // Lost the partition in a rebalance: NotOwned, the new owner reads it again.
                member.commit(&event.checkpoint()).await.expect("commit");
            }
            member.close().await.expect("close");
        })
    };
    let a = consume(join(&broker, &hub, &group).await, None);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = consume(
        join(&broker, &hub, &group).await,
        Some(Duration::from_millis(1500)),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = consume(join(&broker, &hub, &group).await, None);
    send.await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let distinct: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
        if distinct.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {N} distinct events were consumed",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(1, Ordering::SeqCst);
    for t in [a, b, c] {
        t.await.unwrap();
    }
    let total = seen.lock().unwrap().len();
    eprintln!(
        "rebalance: {N} events, {total} deliveries ({} redelivered)",
        total - N
    );
}

fn assert_no_secret(err: &evhub_core::Error, secret: &str) {
    let mut all = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        all.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!all.contains(secret), "secret leaked: {all}");
}

/// Nothing listens on the address: `Unavailable` within the configured timeout, not a hang.
#[tokio::test]
async fn unreachable_bootstrap_is_unavailable_within_timeout() {
    // Needs no broker: port 9 on loopback refuses connections.
    let secret = "unreachable-secret-pw";
    let config = Config::from_toml_str(&format!(
        "backend = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9\"\nrequest_timeout_ms = 3000\nsecurity_protocol = \"sasl_plaintext\"\nusername = \"u\"\npassword = \"{secret}\""
    ))
    .unwrap();
    let started = Instant::now();
    let err = KafkaBackend::from_config(&config).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retriable());
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    assert_no_secret(&err, secret);
}

/// A connection string with the wrong key: `Auth`, and the key is never printed.
#[tokio::test]
async fn wrong_sasl_password_is_auth() {
    let Some(broker) = broker_or_skip("wrong_sasl_password_is_auth") else {
        return;
    };
    let good = broker
        .event_hubs_config()
        .expect("EVHUB_TEST_EHKAFKA_CONNECTION_STRING");
    let wrong_key =
        base64::engine::general_purpose::STANDARD.encode(b"definitely-not-the-key-0123456789");
    let cs = broker
        .connection_string
        .clone()
        .unwrap()
        .split(';')
        .map(|p| {
            if p.starts_with("SharedAccessKey=") {
                format!("SharedAccessKey={wrong_key}")
            } else {
                p.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(";");
    let mut config = EventHubsKafkaConfig::from_connection_string(cs.parse().unwrap());
    config.ssl_ca_location = good.ssl_ca_location.clone();
    config.request_timeout_ms = 10_000;
    let started = Instant::now();
    let err = KafkaBackend::connect_event_hubs(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!err.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(12));
    assert_no_secret(&err, &wrong_key);
    assert!(!format!("{config:?}").contains(&wrong_key));
}

/// A certificate the client does not trust is an `Auth` failure too (not a hang).
#[tokio::test]
async fn untrusted_certificate_is_auth() {
    let Some(broker) = broker_or_skip("untrusted_certificate_is_auth") else {
        return;
    };
    let mut config = broker.event_hubs_config().expect("connection string");
    config.ssl_ca_location = None; // system roots do not know the test CA
    config.request_timeout_ms = 8_000;
    let err = KafkaBackend::connect_event_hubs(&config).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Auth | ErrorKind::Unavailable),
        "{err}"
    );
    let cs = broker.connection_string.unwrap();
    let key = cs.split("SharedAccessKey=").nth(1).unwrap();
    assert_no_secret(&err, key);
}

/// Malformed configuration fails with `Config` naming the key and never its value.
#[tokio::test]
async fn malformed_config_names_the_key() {
    for (key, value) in [
        ("linger.ms", "not-a-number"),
        ("no.such.property", "value-xyz-123"),
        ("security.protocol", "bogus-proto-123"),
        ("compression.type", "bogus-codec-123"),
    ] {
        let mut config = KafkaConfig::new("127.0.0.1:9");
        config.request_timeout_ms = 2_000;
        config.librdkafka = BTreeMap::from([(key.to_owned(), value.to_owned())]);
        let err = KafkaBackend::connect(&config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{key}: {err}");
        assert!(err.to_string().contains(key), "{key}: {err}");
        assert_no_secret(&err, value);
    }
    // Typed keys: unknown names and bad values name the key.
    let err = Config::from_toml_str(
        "backend = \"kafka\"\nbootstrap_servers = \"b:1\"\nsesion_timeout_ms = 1",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("sesion_timeout_ms"), "{err}");
    let err = Config::from_toml_str(
        "backend = \"eventhubs-kafka\"\nconnection_string = \"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=not base64!!\"",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains("not base64!!"), "{err}");
}

/// An Azure-style credential whose tokens are unsigned JWTs, accepted by the broker's
/// unsecured OAUTHBEARER validator.
#[derive(Debug, Default)]
struct UnsecuredJwtCredential {
    calls: AtomicUsize,
    scopes: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl TokenCredential for UnsecuredJwtCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none"})),
            b64(serde_json::json!({"sub": "evhub-test", "iat": now, "exp": now + 3600}))
        );
        let expires = time::OffsetDateTime::from_unix_timestamp((now + 3600) as i64).unwrap();
        Ok(AccessToken::new(token, expires))
    }
}

/// `eventhubs-kafka` with an Azure AD credential: tokens come from the credential through
/// librdkafka's OAUTHBEARER refresh callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_tokens_come_from_the_credential() {
    let Some(broker) = broker_or_skip("oauthbearer_tokens_come_from_the_credential") else {
        return;
    };
    let Some(oauth) = broker.oauth.clone() else {
        eprintln!("skipped: EVHUB_TEST_KAFKA_OAUTH_BOOTSTRAP unset");
        return;
    };
    let (_admin, hub) = hub(&broker, "oauth", 1).await;
    let mut config = EventHubsKafkaConfig::from_connection_string(
        broker.connection_string.clone().unwrap().parse().unwrap(),
    );
    config.connection_string = None;
    config.namespace = Some(oauth.clone());
    config.request_timeout_ms = 15_000;
    config.session_timeout_ms = 6_000;
    // The test listener is SASL_PLAINTEXT; Azure's is SASL_SSL.
    config.librdkafka =
        BTreeMap::from([("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned())]);
    let credential = Arc::new(UnsecuredJwtCredential::default());
    let backend = KafkaBackend::connect_event_hubs_with_credential(&config, credential.clone())
        .await
        .expect("connect with OAUTHBEARER");
    assert_eq!(backend.id(), "eventhubs-kafka");
    backend
        .producer(&hub)
        .await
        .unwrap()
        .send(Event::new("token-ok"))
        .await
        .unwrap();
    let consumer = backend
        .consumer(&hub, ConsumerOptions::new(unique_name("oauth-g")))
        .await
        .unwrap();
    let got = recv_n(&*consumer, 1).await;
    assert_eq!(text(&got[0]), "token-ok");
    consumer.close().await.unwrap();
    assert!(
        credential.calls.load(Ordering::SeqCst) >= 2,
        "one token per client at least"
    );
    let host = oauth.split(':').next().unwrap();
    assert!(credential
        .scopes
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == &format!("https://{host}/.default")));
}

/// A credential that fails: connecting reports `Auth`, not a hang.
#[tokio::test]
async fn failing_credential_is_auth() {
    #[derive(Debug)]
    struct Failing;
    #[async_trait]
    impl TokenCredential for Failing {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no identity here",
            ))
        }
    }
    let Some(broker) = broker_or_skip("failing_credential_is_auth") else {
        return;
    };
    let Some(oauth) = broker.oauth.clone() else {
        return;
    };
    let mut config = broker.event_hubs_config().unwrap();
    config.connection_string = None;
    config.namespace = Some(oauth);
    config.request_timeout_ms = 5_000;
    config.librdkafka =
        BTreeMap::from([("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned())]);
    let started = Instant::now();
    let err = KafkaBackend::connect_event_hubs_with_credential(&config, Arc::new(Failing))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(started.elapsed() < Duration::from_secs(8));
}
