//! Authentication from config against the emulator, which checks SAS signatures: a connection
//! string carrying a pre-signed SAS token, and a wrong key mapped to a non-retriable `Auth`
//! error that does not show the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use evhub_core::config::EventHubsConfig;
use evhub_core::{Backend, ErrorKind, Event, ReaderOptions, StartPosition};
use evhub_eventhubs::EventHubsBackend;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_token_connection_string_sends_and_reads() {
    let hub = unique("sas-token");
    common::create_hub(&hub, 1).unwrap();
    let token =
        common::emulator().sas_token(&format!("sb://127.0.0.1/{hub}"), Duration::from_secs(3600));
    let port = common::proxy_addr().port();
    let cs = format!(
        "Endpoint=sb://127.0.0.1:{port}/;SharedAccessSignature={token};EntityPath={hub};UseDevelopmentEmulator=true"
    );
    let config = EventHubsConfig::from_connection_string(cs.parse().unwrap());
    assert!(
        !format!("{config:?}").contains("sig="),
        "token leaked in Debug"
    );
    let backend = EventHubsBackend::connect(&config).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        backend
            .producer(&hub)
            .await
            .unwrap()
            .send(Event::new("signed").with_key("k"))
            .await
            .unwrap();
        let reader = backend
            .partition_reader(&hub, ReaderOptions::new(0, StartPosition::Earliest))
            .await
            .unwrap();
        let event = reader.recv().await.unwrap();
        assert_eq!(&event.payload[..], b"signed");
        reader.close().await.unwrap();
    })
    .await
    .expect("SAS token round trip within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_a_non_retriable_auth_error_without_the_key() {
    let hub = unique("wrong-key");
    common::create_hub(&hub, 1).unwrap();
    let wrong = "d3Jvbmcta2V5LWZvci10aGUtZW11bGF0b3ItdGVzdA==";
    let port = common::proxy_addr().port();
    let cs = format!(
        "Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={wrong};UseDevelopmentEmulator=true"
    );
    let mut config = EventHubsConfig::from_connection_string(cs.parse().unwrap());
    config.operation_timeout_ms = 20_000;
    let backend = EventHubsBackend::connect(&config).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(60), backend.producer(&hub))
        .await
        .expect("auth failure within 60 s")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_retriable(), "{e:?}");
    assert!(!e.to_string().contains(wrong) && !format!("{e:?}").contains(wrong));
}
