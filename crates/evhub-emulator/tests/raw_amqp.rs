//! Protocol-level tests with a plain AMQP client (`fe2o3-amqp`) and raw TCP:
//! refusals carry AMQP errors, bad input closes only the offending
//! connection or link, and the server keeps serving everyone else.

// Tests fail by panicking; helpers outside #[test] fns panic on purpose too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evhub_emulator::{Emulator, EmulatorHandle};
use fe2o3_amqp::{
    connection::ConnectionHandle,
    link::{delivery::DeliveryInfo, Receiver, Sender},
    session::SessionHandle,
    types::{
        messaging::{Body, Message, Outcome},
        primitives::Value,
    },
    Connection, Session,
};
use std::{future::Future, time::Duration};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test exceeded its time limit");
}

async fn start() -> EmulatorHandle {
    Emulator::builder()
        .port(0)
        .hub("hub", 2)
        .no_auth(true)
        .start()
        .await
        .expect("emulator starts")
}

async fn open(emulator: &EmulatorHandle) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let mut connection = Connection::builder()
        .container_id("raw-test")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
        .open(emulator.endpoint().as_str())
        .await
        .expect("connection opens");
    let session = Session::begin(&mut connection)
        .await
        .expect("session begins");
    (connection, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_amqp_client_sends_and_receives() {
    bounded(async {
        let emulator = start().await;
        let (mut connection, mut session) = open(&emulator).await;
        let mut sender = Sender::attach(&mut session, "s", "hub/Partitions/1")
            .await
            .unwrap();
        assert_eq!(sender.max_message_size(), Some(1024 * 1024));
        let outcome = sender
            .send(Message::builder().value("hello").build())
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        let mut receiver = Receiver::attach(
            &mut session,
            "r",
            "hub/ConsumerGroups/$Default/Partitions/1",
        )
        .await
        .unwrap();
        let delivery =
            tokio::time::timeout(Duration::from_secs(10), receiver.recv::<Body<Value>>())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            delivery.body(),
            &Body::Value(fe2o3_amqp::types::messaging::AmqpValue(Value::String(
                "hello".into()
            )))
        );
        receiver.accept(&delivery).await.unwrap();
        let _: DeliveryInfo = delivery.into();
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
        session.end().await.unwrap();
        connection.close().await.unwrap();
        emulator.shutdown().await;
    })
    .await;
}
