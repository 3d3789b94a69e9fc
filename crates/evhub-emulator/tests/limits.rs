//! Bounded resources and safe defaults, against the emulator binary:
//! connections, links per session, the time a connection may stay without a
//! valid token, receivers whose token expires, non-loopback binds without a
//! real key, and a TLS-only emulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use evhub_emulator::{Emulator, TlsConfig};
use fe2o3_amqp::{Receiver, Sender};
use std::time::Duration;
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let emulator = ChildEmulator::start(&["--hub", "h:1", "--max-connections", "2"]);
        let _a = raw_sender_link(emulator.addr, "$cbs").await;
        let _b = raw_sender_link(emulator.addr, "$cbs").await;
        let mut third = TcpStream::connect(emulator.addr).await.unwrap();
        let _ = third.write_all(b"AMQP\x03\x01\x00\x00").await;
        let received = read_until_closed(&mut third, Duration::from_secs(5))
            .await
            .expect("the third connection is closed at once");
        assert!(received.is_empty(), "no protocol answer: {received:?}");
        drop(_a);
        drop(_b);
        // Freed permits let new connections in again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        authenticated_send(&emulator.endpoint(), "h", "after")
            .await
            .unwrap();
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_beyond_the_session_limit_are_refused() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let emulator = ChildEmulator::start(&["--hub", "h:1", "--max-links-per-session", "4"]);
        let (_connection, mut session) = authenticated_session(&emulator.endpoint(), "h")
            .await
            .unwrap();
        // put_token's two links are closed again: four links fit.
        let mut senders = Vec::new();
        for n in 0..4 {
            senders.push(
                Sender::attach(&mut session, format!("s{n}"), "h/Partitions/0")
                    .await
                    .unwrap(),
            );
        }
        let fifth = Sender::attach(&mut session, "s4", "h/Partitions/0").await;
        let Err(error) = fifth else {
            panic!("the fifth link is accepted");
        };
        let error = format!("{error:?}");
        assert!(error.contains("ResourceLimitExceeded"), "{error}");
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_token_are_closed_after_the_auth_timeout() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let emulator = ChildEmulator::start(&["--hub", "h:1", "--auth-timeout-secs", "1"]);
        let mut idle = raw_sender_link(emulator.addr, "$cbs").await;
        let started = std::time::Instant::now();
        let received = read_until_contains(
            &mut idle,
            b"amqp:unauthorized-access",
            Duration::from_secs(10),
        )
        .await;
        assert!(
            contains(&received, b"amqp:unauthorized-access"),
            "{received:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // A client that authenticates is not affected.
        let (_connection, mut session) = authenticated_session(&emulator.endpoint(), "h")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut sender = Sender::attach(&mut session, "late", "h/Partitions/0")
            .await
            .unwrap();
        sender
            .send(
                fe2o3_amqp::types::messaging::Message::builder()
                    .value("ok".to_string())
                    .build(),
            )
            .await
            .unwrap();
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_are_closed_when_their_token_expires() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let emulator = ChildEmulator::start(&["--hub", "h:1"]);
        let (_connection, mut session) = fe2o3_session(&emulator.endpoint()).await;
        put_token_expiring(&mut session, "h", 2).await.unwrap();
        let mut receiver = Receiver::attach(
            &mut session,
            "expiring",
            "h/ConsumerGroups/$Default/Partitions/0",
        )
        .await
        .unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            receiver
                .recv::<fe2o3_amqp::types::messaging::Body<fe2o3_amqp::types::primitives::Value>>(),
        )
        .await
        .expect("the link ends within 10 s");
        let Err(error) = result else {
            panic!("the receive succeeds");
        };
        let error = format!("{error:?}");
        assert!(error.contains("UnauthorizedAccess"), "{error}");
    })
    .await
    .expect("bounded");
}

#[test]
fn exposed_bind_with_the_default_key_is_refused() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evhub-emulator"))
        .args(["--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evhub-emulator"))
        .args(["--bind", "0.0.0.0:0", "--no-auth", "--key", "k=v"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "no_auth is refused too");
}

#[tokio::test]
async fn tls_only_has_no_plain_listener() {
    let emulator = Emulator::builder()
        .tls(TlsConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .tls_only(true)
        .start()
        .await
        .unwrap();
    assert!(emulator.endpoint().starts_with("amqps://127.0.0.1:"));
    assert_eq!(Some(emulator.local_addr()), emulator.tls_addr());
    assert!(Emulator::builder().tls_only(true).start().await.is_err());
    emulator.shutdown().await;
}
