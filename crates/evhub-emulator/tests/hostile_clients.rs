//! The two findings of issue 13, reproduced against the emulator binary as a
//! child process, from a client that never authenticates (SASL ANONYMOUS, a
//! sender link to `$cbs`):
//! - a transfer whose amqp-value body is 300 / 3,000 nested described values
//!   (this overflowed the stack and aborted the process);
//! - an endless stream of `more = true` transfer frames for one message (this
//!   was buffered without limit: 4.8 GiB in 15 s).
//!
//! The emulator must close only that connection with the matching AMQP
//! error, stay alive, keep its memory bounded and serve a normal client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fe2o3_amqp::{types::messaging::Message, Sender};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

/// Resident memory the emulator must stay under in these tests.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Sends `message` on a fresh unauthenticated `$cbs` sender link and
/// expects the link (detach) or the connection (close) to end with
/// `amqp:decode-error`.
async fn refused_with_decode_error(emulator: &ChildEmulator, message: &[u8], what: &str) {
    let mut stream = raw_sender_link(emulator.addr, "$cbs").await;
    stream
        .write_all(&transfer(0, false, message))
        .await
        .unwrap();
    let received =
        read_until_contains(&mut stream, b"amqp:decode-error", Duration::from_secs(10)).await;
    assert!(
        contains(&received, b"amqp:decode-error"),
        "{what}: no amqp:decode-error from the server: {received:?}"
    );
}

/// Sends one event on an existing session (its connection predates the attack).
async fn send_on(session: &mut fe2o3_amqp::session::SessionHandle<()>, text: &str) {
    let mut sender = Sender::attach(session, format!("existing-{text}"), "orders/Partitions/0")
        .await
        .expect("the existing connection still attaches links");
    let outcome = sender
        .send(Message::builder().value(text.to_string()).build())
        .await
        .expect("the existing connection still sends");
    assert!(outcome.is_accepted(), "{outcome:?}");
    let _ = sender.close().await;
}

async fn nested_body_is_refused(levels: usize) {
    let mut emulator = ChildEmulator::start(&["--hub", "orders:1"]);
    let (_connection, mut session) = authenticated_session(&emulator.endpoint(), "orders")
        .await
        .unwrap();
    // The finding: nested described values as the amqp-value body.
    let body = amqp_value_message(&nested_described(levels));
    refused_with_decode_error(&emulator, &body, &format!("{levels}-level body")).await;
    // The same nesting in message annotations (which the emulator decodes).
    let mut annotated = vec![0x00, 0x53, 0x72];
    annotated.extend(nested_described(levels));
    annotated.extend(amqp_value_message(&[0x40]));
    refused_with_decode_error(
        &emulator,
        &annotated,
        &format!("{levels}-level annotations"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(emulator.alive(), "{levels} levels: the emulator died");
    send_on(&mut session, "during").await;
    authenticated_send(&emulator.endpoint(), "orders", "after")
        .await
        .unwrap_or_else(|e| panic!("{levels} levels: a new client failed: {e}"));
    assert!(emulator.rss_kib() < RSS_BOUND_KIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_body_300_levels_from_anonymous_client() {
    tokio::time::timeout(Duration::from_secs(60), nested_body_is_refused(300))
        .await
        .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_body_3000_levels_from_anonymous_client() {
    tokio::time::timeout(Duration::from_secs(60), nested_body_is_refused(3000))
        .await
        .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_more_transfers_are_cut_at_max_message_size() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut emulator = ChildEmulator::start(&["--hub", "orders:1"]);
        // A well-behaved client is connected the whole time.
        let (_connection, mut session) = authenticated_session(&emulator.endpoint(), "orders")
            .await
            .unwrap();
        let baseline = emulator.rss_kib();
        let mut stream = raw_sender_link(emulator.addr, "$cbs").await;
        let chunk = transfer(0, true, &vec![0x40; 60 * 1024]);
        let mut sent: u64 = 0;
        // Write until the server stops reading and closes (at most 64 MiB).
        while sent < 64 * 1024 * 1024 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        let received = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        let received = received.expect("the server closes the connection");
        assert!(
            sent < 8 * 1024 * 1024,
            "the server accepted {sent} bytes of one message"
        );
        assert!(
            contains(&received, b"amqp:link:message-size-exceeded"),
            "{received:?}"
        );
        assert!(emulator.alive());
        let rss = emulator.rss_kib();
        assert!(
            rss < RSS_BOUND_KIB,
            "RSS {rss} KiB (baseline {baseline} KiB)"
        );
        send_on(&mut session, "during").await;
        authenticated_send(&emulator.endpoint(), "orders", "after")
            .await
            .expect("a new client is served");
        eprintln!(
            "endless more=true: {sent} bytes written before the close; RSS {baseline} -> {rss} KiB"
        );
    })
    .await
    .expect("bounded");
}
