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
use fe2o3_amqp::{
    link::ReceiverAttachError,
    types::{
        definitions::{AmqpError, ErrorCondition, Fields, LinkError},
        messaging::{FilterSet, Source},
        primitives::Symbol,
    },
};
use serde_amqp::{described::Described, descriptor::Descriptor};
use std::{future::Future, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test exceeded its time limit");
}

async fn start() -> EmulatorHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

/// Attaches a receiver with an optional selector and epoch; returns the
/// refusal condition, or `None` if the link stayed attached.
async fn receiver_refusal(
    session: &mut SessionHandle<()>,
    name: &str,
    address: &str,
    selector: Option<&str>,
    epoch: Option<i64>,
) -> (Option<ErrorCondition>, Option<Receiver>) {
    let mut source = Source::builder().address(address.to_string());
    if let Some(selector) = selector {
        let mut filter = FilterSet::new();
        filter.insert(
            Symbol::from("apache.org:selector-filter:string"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Code(0x0000_468C_0000_0004),
                value: Value::String(selector.to_string()),
            })),
        );
        source = source.filter(filter);
    }
    let mut builder = Receiver::builder()
        .name(name)
        .source(source.build())
        .target("client");
    if let Some(epoch) = epoch {
        let mut properties = Fields::new();
        properties.insert(Symbol::from("com.microsoft:epoch"), Value::Long(epoch));
        builder = builder.properties(properties);
    }
    match builder.attach(session).await {
        Ok(receiver) => (None, Some(receiver)),
        Err(ReceiverAttachError::RemoteClosedWithError(error)) => (Some(error.condition), None),
        Err(other) => panic!("unexpected attach error {other:?}"),
    }
}

/// A connection that must keep working while others misbehave.
async fn round_trip(session: &mut SessionHandle<()>, partition: &str, text: &str) {
    let mut sender = Sender::attach(
        session,
        format!("s-{text}"),
        format!("hub/Partitions/{partition}"),
    )
    .await
    .unwrap();
    let outcome = sender
        .send(Message::builder().value(text.to_string()).build())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)));
    sender.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_links_carry_amqp_errors() {
    bounded(async {
        let emulator = start().await;
        let (connection, mut session) = open(&emulator).await;
        let (refused, _) = receiver_refusal(
            &mut session,
            "bad-filter",
            "hub/ConsumerGroups/$Default/Partitions/0",
            Some("amqp.annotation.x-opt-offset < 'garbage'"),
            None,
        )
        .await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::InvalidField))
        );
        let (refused, _) = receiver_refusal(
            &mut session,
            "no-hub",
            "nosuchhub/ConsumerGroups/$Default/Partitions/0",
            None,
            None,
        )
        .await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::NotFound))
        );
        let (refused, _) = receiver_refusal(
            &mut session,
            "no-group",
            "hub/ConsumerGroups/nope/Partitions/0",
            None,
            None,
        )
        .await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::NotFound))
        );
        let (refused, _) = receiver_refusal(
            &mut session,
            "no-partition",
            "hub/ConsumerGroups/$Default/Partitions/7",
            None,
            None,
        )
        .await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::NotFound))
        );
        let (refused, _) = receiver_refusal(&mut session, "odd-node", "$weird", None, None).await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::NotFound))
        );
        let sender = fe2o3_amqp::Sender::attach(&mut session, "to-nowhere", "nosuchhub").await;
        assert!(
            matches!(
                sender,
                Err(fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(ref e))
                    if e.condition == ErrorCondition::AmqpError(AmqpError::NotFound)
            ),
            "{sender:?}"
        );

        // Five plain readers per partition and group; the sixth is refused.
        let mut readers = Vec::new();
        for i in 0..5 {
            let (refused, receiver) = receiver_refusal(
                &mut session,
                &format!("plain-{i}"),
                "hub/ConsumerGroups/$Default/Partitions/1",
                None,
                None,
            )
            .await;
            assert_eq!(refused, None);
            readers.push(receiver.unwrap());
        }
        let (refused, _) = receiver_refusal(
            &mut session,
            "plain-6",
            "hub/ConsumerGroups/$Default/Partitions/1",
            None,
            None,
        )
        .await;
        assert_eq!(
            refused,
            Some(ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded))
        );
        // An epoch reader takes over: every plain reader is detached as stolen.
        let (refused, owner) = receiver_refusal(
            &mut session,
            "owner",
            "hub/ConsumerGroups/$Default/Partitions/1",
            None,
            Some(3),
        )
        .await;
        assert_eq!(refused, None);
        for mut reader in readers {
            let error = tokio::time::timeout(Duration::from_secs(5), reader.recv::<Body<Value>>())
                .await
                .expect("stolen reader is told")
                .expect_err("stolen reader fails");
            assert!(format!("{error:?}").contains("Stolen"), "{error:?}");
        }
        let (refused, _) = receiver_refusal(
            &mut session,
            "lower",
            "hub/ConsumerGroups/$Default/Partitions/1",
            None,
            Some(2),
        )
        .await;
        assert_eq!(refused, Some(ErrorCondition::LinkError(LinkError::Stolen)));
        let (refused, _) = receiver_refusal(
            &mut session,
            "plain-again",
            "hub/ConsumerGroups/$Default/Partitions/1",
            None,
            None,
        )
        .await;
        assert_eq!(refused, Some(ErrorCondition::LinkError(LinkError::Stolen)));
        drop(owner);
        drop(session);
        drop(connection);
        // The server still serves new clients after all those refusals.
        let (mut connection, mut session) = open(&emulator).await;
        round_trip(&mut session, "0", "still-fine").await;
        session.end().await.unwrap();
        connection.close().await.unwrap();
        emulator.shutdown().await;
    })
    .await;
}

/// Reads until the server closes the socket; returns everything it sent.
async fn read_to_close(stream: &mut TcpStream, step: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let result =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(
        result.is_ok(),
        "{step}: server did not close the connection; got {received:?}"
    );
    received
}

fn frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[2, frame_type, 0, 0]);
    out.extend_from_slice(body);
    out
}

/// Protocol header, SASL ANONYMOUS and the AMQP header, by hand.
async fn raw_handshake(emulator: &EmulatorHandle) -> TcpStream {
    let mut stream = TcpStream::connect(emulator.local_addr()).await.unwrap();
    stream.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, b"AMQP\x03\x01\x00\x00");
    read_frame(&mut stream).await; // sasl-mechanisms
    let mut init = vec![0x00, 0x53, 0x41, 0xc0, 0x0c, 0x01, 0xa3, 0x09];
    init.extend_from_slice(b"ANONYMOUS");
    stream.write_all(&frame(1, &init)).await.unwrap();
    let outcome = read_frame(&mut stream).await;
    assert_eq!(&outcome[8..11], &[0x00, 0x53, 0x44], "sasl-outcome");
    stream.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, b"AMQP\x00\x01\x00\x00");
    stream
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(size) as usize - 4];
    stream.read_exact(&mut rest).await.unwrap();
    let mut frame = size.to_vec();
    frame.extend(rest);
    frame
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_the_offending_connection() {
    bounded(async {
        let emulator = start().await;
        let (mut connection, mut session) = open(&emulator).await;
        round_trip(&mut session, "0", "before").await;

        // 1. Wrong protocol header: the server answers with its own and closes.
        let mut stream = TcpStream::connect(emulator.local_addr()).await.unwrap();
        stream.write_all(b"HTTP/1.1 GET /\r\n\r\n").await.unwrap();
        let received = read_to_close(&mut stream, "wrong header").await;
        assert!(received.starts_with(b"AMQP"), "{received:?}");

        // 2. A malformed frame where the open frame should be.
        let mut stream = raw_handshake(&emulator).await;
        stream
            .write_all(&frame(0, &[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]))
            .await
            .unwrap();
        let received = read_to_close(&mut stream, "malformed frame").await;
        assert!(
            !contains(&received, b"evhub-emulator") || contains(&received, &[0x00, 0x53, 0x18]),
            "{received:?}"
        );

        // 3. A frame far above the negotiated max-frame-size after a valid open.
        let mut stream = raw_handshake(&emulator).await;
        let open_frame = [0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1, 0x01, b'x'];
        stream.write_all(&frame(0, &open_frame)).await.unwrap();
        let server_open = read_frame(&mut stream).await;
        assert_eq!(&server_open[8..11], &[0x00, 0x53, 0x10]);
        let mut huge = (4u32 * 1024 * 1024).to_be_bytes().to_vec();
        huge.extend_from_slice(&[2, 0, 0, 0]);
        huge.extend(std::iter::repeat_n(0u8, 70 * 1024));
        let _ = stream.write_all(&huge).await;
        let received = read_to_close(&mut stream, "huge frame").await;
        // A close frame with an AMQP error comes back before the socket closes.
        assert!(contains(&received, &[0x00, 0x53, 0x18]), "{received:?}");
        assert!(contains(&received, b"amqp:"), "{received:?}");

        // The well-behaved connection is unaffected and new ones work.
        round_trip(&mut session, "1", "after").await;
        let (mut other, mut other_session) = open(&emulator).await;
        round_trip(&mut other_session, "1", "new-client").await;
        other_session.end().await.unwrap();
        other.close().await.unwrap();
        session.end().await.unwrap();
        connection.close().await.unwrap();
        emulator.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_generated_certificate() {
    use std::sync::Arc;
    use tokio_rustls::{
        rustls::{
            pki_types::{pem::PemObject, CertificateDer, ServerName},
            ClientConfig, RootCertStore,
        },
        TlsConnector,
    };
    bounded(async {
        let emulator = Emulator::builder()
            .port(0)
            .hub("hub", 1)
            .no_auth(true)
            .tls(evhub_emulator::TlsConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                cert: None,
                key: None,
            })
            .start()
            .await
            .unwrap();
        let pem = emulator
            .tls_certificate_pem()
            .expect("generated certificate");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(emulator.tls_addr().unwrap())
            .await
            .unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost".to_string()).unwrap(), tcp)
            .await
            .expect("TLS handshake with the generated certificate");
        let mut connection = Connection::builder()
            .container_id("tls-test")
            .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
            .open_with_stream(tls)
            .await
            .unwrap();
        let mut session = Session::begin(&mut connection).await.unwrap();
        round_trip(&mut session, "0", "over-tls").await;
        // A plain client on the TLS port gets no AMQP header back.
        let mut plain = TcpStream::connect(emulator.tls_addr().unwrap())
            .await
            .unwrap();
        plain.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
        let received = read_to_close(&mut plain, "plain on TLS port").await;
        assert!(!received.starts_with(b"AMQP"), "{received:?}");
        session.end().await.unwrap();
        connection.close().await.unwrap();
        emulator.shutdown().await;
    })
    .await;
}
