//! Links and sessions that end while the emulator is still sending on them
//! must not take the rest of the connection down.
//!
//! AMQP 1.0 lets a peer keep sending on a link until it sees the detach
//! (2.6.5, 2.7.7) and on a session until it sees the end (2.5.5, 2.7.8), so
//! a client that detaches or ends while deliveries flow gets frames after its
//! own detach / end. `fe2o3-amqp` (the Azure Rust SDK's AMQP stack) used to
//! treat those as `amqp:session:unattached-handle`, stop the session engine
//! before the peer's end came back, and then close its whole connection with
//! `amqp:not-found` "Session is not found", failing every other receiver on
//! it (`evhub bench --compare-raw`, issue 11). The carried patch in
//! `patches/fe2o3-amqp` fixes the client; these tests fail without it.

// Tests fail by panicking; helpers outside #[test] fns panic on purpose too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use azure_messaging_eventhubs::{
    ConsumerClient, EventReceiver, OpenReceiverOptions, StartLocation, StartPosition,
};
use evhub_emulator::{Emulator, EmulatorHandle};
use fe2o3_amqp::{
    types::{
        messaging::{Body, Message},
        primitives::{Binary, Value},
    },
    Connection, Receiver, Sender, Session,
};
use futures::StreamExt;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Partitions of the test hub.
const PARTITIONS: u32 = 8;
/// Events per partition: more than a receiver's credit (200 for a plain
/// `fe2o3-amqp` receiver, 300 prefetch in the SDK), so deliveries are always
/// in flight when a receiver goes away.
const EVENTS: usize = 1_500;

/// The emulator with hub `busy`, without token checks (the plain AMQP
/// clients do not put tokens; the SDK still does, on `$cbs`, which matters).
async fn start() -> EmulatorHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Emulator::builder()
        .port(0)
        .hub("busy", PARTITIONS)
        .no_auth(true)
        .start()
        .await
        .expect("emulator starts")
}

/// Fills every partition of `busy` with `EVENTS` events over a connection
/// of its own (a plain `fe2o3-amqp` sender, so the fill does not depend on
/// the fix under test). Outcomes are awaited with a time limit only: such a
/// sender may miss an outcome that arrives before it registered the delivery
/// (see the emulator's `settle.rs`), and the event is stored either way; the
/// receivers below check that every event is there.
async fn fill(emulator: &EmulatorHandle) {
    let mut connection = Connection::builder()
        .container_id("session-races-fill")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
        .open(emulator.endpoint().as_str())
        .await
        .expect("connection opens");
    let mut session = Session::begin(&mut connection).await.unwrap();
    for partition in 0..PARTITIONS {
        let address = format!("busy/Partitions/{partition}");
        let mut sender = Sender::attach(&mut session, format!("fill-{partition}"), address)
            .await
            .unwrap();
        let mut outcomes = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let body = format!("p{partition}-e{i}").into_bytes();
            let message = Message::builder().data(Binary::from(body)).build();
            outcomes.push(sender.send_batchable(message).await.unwrap());
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(outcomes)).await;
        // Closed, not dropped: dropping is what the tests below exercise.
        sender.close().await.unwrap();
    }
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

/// A plain `fe2o3-amqp` client on one connection: one receiver reads a whole
/// partition while, on other sessions of the same connection, receivers are
/// attached and dropped (with their sessions) in the middle of a stream of
/// deliveries, the way the SDK drops its `$cbs` links and session after
/// every token. The long-lived receiver must get every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_busy_receivers_keeps_the_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let emulator = start().await;
        let mut connection = Connection::builder()
            .container_id("session-races")
            .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
            .open(emulator.endpoint().as_str())
            .await
            .expect("connection opens");
        fill(&emulator).await;

        let mut steady_session = Session::begin(&mut connection).await.unwrap();
        let mut steady = Receiver::attach(
            &mut steady_session,
            "steady",
            "busy/ConsumerGroups/$Default/Partitions/0",
        )
        .await
        .unwrap();
        let mut received = 0usize;
        for round in 0..40u32 {
            // A receiver on its own session: take one delivery, then drop the
            // receiver and the session while the rest of its credit is in flight.
            let partition = 1 + round % (PARTITIONS - 1);
            let mut session = Session::begin(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("round {round}: session begins: {e}"));
            let mut receiver = Receiver::attach(
                &mut session,
                format!("short-{round}"),
                format!("busy/ConsumerGroups/$Default/Partitions/{partition}"),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: receiver attaches: {e}"));
            let delivery = receiver.recv::<Body<Value>>().await.unwrap();
            receiver.accept(&delivery).await.unwrap();
            drop(receiver);
            drop(session);
            // Meanwhile the long-lived receiver keeps receiving.
            for _ in 0..(EVENTS / 40) {
                let delivery = steady
                    .recv::<Body<Value>>()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: steady receiver failed: {e}"));
                steady.accept(&delivery).await.unwrap();
                received += 1;
            }
        }
        while received < EVENTS {
            let delivery =
                tokio::time::timeout(Duration::from_secs(10), steady.recv::<Body<Value>>())
                    .await
                    .expect("steady receiver gets the rest")
                    .unwrap();
            steady.accept(&delivery).await.unwrap();
            received += 1;
        }
        steady.close().await.unwrap();
        steady_session.end().await.unwrap();
        connection.close().await.expect("connection closes cleanly");
        emulator.shutdown().await;
    })
    .await
    .expect("test exceeded its time limit");
}

fn earliest() -> OpenReceiverOptions {
    OpenReceiverOptions {
        start_position: Some(StartPosition {
            location: StartLocation::Earliest,
            inclusive: false,
        }),
        prefetch: Some(300),
        ..Default::default()
    }
}

/// The SDK: one `ConsumerClient` (one connection), one receiver per
/// partition, receivers closed one by one while the others still receive
/// (each open also puts a token on `$cbs` over a session the SDK drops right
/// after). Every receiver still open must get all of its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_receivers_closed_one_by_one_leave_the_others_receiving() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let emulator = start().await;
        fill(&emulator).await;
        let consumer = ConsumerClient::builder()
            .with_custom_endpoint(emulator.endpoint())
            .open_with_connection_string(&emulator.connection_string("busy"), None)
            .await
            .expect("consumer opens");
        let mut receivers: Vec<(u32, EventReceiver)> = Vec::new();
        for partition in 0..PARTITIONS {
            let receiver = consumer
                .open_receiver_on_partition(partition.to_string(), Some(earliest()))
                .await
                .unwrap();
            receivers.push((partition, receiver));
        }
        // Partition p is read up to (p + 1) / (PARTITIONS + 1) of its events,
        // then its receiver is closed; the last one reads everything.
        let mut counts = vec![0usize; PARTITIONS as usize];
        while let Some((partition, receiver)) = receivers.first() {
            let partition = *partition;
            let goal = if receivers.len() == 1 {
                EVENTS
            } else {
                EVENTS * (partition as usize + 1) / (PARTITIONS as usize + 1)
            };
            {
                let mut stream = Box::pin(receiver.stream_events());
                while counts[partition as usize] < goal {
                    let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
                        .await
                        .unwrap_or_else(|_| panic!("partition {partition}: no event in 20 s"))
                        .expect("stream open")
                        .unwrap_or_else(|e| panic!("partition {partition}: {e}"));
                    let body = event.event_data().body().unwrap().to_vec();
                    let expected = format!("p{partition}-e{}", counts[partition as usize]);
                    assert_eq!(String::from_utf8(body).unwrap(), expected);
                    counts[partition as usize] += 1;
                }
            }
            // Every other receiver gets an event too, so all of them have
            // deliveries in flight while this one closes.
            for (other, receiver) in receivers.iter().skip(1) {
                let mut stream = Box::pin(receiver.stream_events());
                let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("partition {other}: no event in 20 s"))
                    .expect("stream open")
                    .unwrap_or_else(|e| panic!("partition {other} after a close: {e}"));
                let body = event.event_data().body().unwrap().to_vec();
                let expected = format!("p{other}-e{}", counts[*other as usize]);
                assert_eq!(String::from_utf8(body).unwrap(), expected);
                counts[*other as usize] += 1;
            }
            let (_, receiver) = receivers.remove(0);
            receiver.close().await.unwrap();
        }
        assert_eq!(counts[PARTITIONS as usize - 1], EVENTS);
        consumer.close().await.unwrap();
        emulator.shutdown().await;
    })
    .await
    .expect("test exceeded its time limit");
}
