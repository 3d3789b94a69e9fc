//! Shared by the hardening tests: the emulator binary as a child process
//! (so a crash shows up as a dead child, and its memory can be read), raw
//! AMQP frames written by hand, and a well-behaved client that authenticates
//! through `$cbs` like the SDKs do.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use evhub_emulator::{sas, SasKey};
use fe2o3_amqp::{
    types::{
        messaging::{ApplicationProperties, Message, Outcome, Properties},
        primitives::{SimpleValue, Value},
    },
    Connection, Receiver, Sender, Session,
};
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Key the child emulators run with.
pub const KEY_NAME: &str = "test-policy";
pub const KEY_VALUE: &str = "test-key-value";

/// The emulator binary running as a child process; killed on drop.
pub struct ChildEmulator {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ChildEmulator {
    /// Starts `evhub-emulator --port 0 --key ... <extra>` and waits for its
    /// "listening on" line.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_stderr(extra, Stdio::inherit())
    }

    /// Like [`start`](Self::start), with the child's stderr going to `stderr`
    /// (e.g. a file, to look for panics afterwards).
    pub fn start_with_stderr(extra: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_evhub-emulator"))
            .args(["--port", "0", "--key", &format!("{KEY_NAME}={KEY_VALUE}")])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the emulator binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line");
        let addr = line
            .trim()
            .rsplit("amqp://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                eprintln!("emulator exited: {status}");
                false
            }
            Err(_) => false,
        }
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    pub fn endpoint(&self) -> String {
        format!("amqp://{}", self.addr)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the emulator binary expecting it to fail at start; returns its exit
/// code and stderr.
pub fn start_failure(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_evhub-emulator"))
        .args(["--port", "0", "--key", &format!("{KEY_NAME}={KEY_VALUE}")])
        .args(args)
        .output()
        .expect("run the emulator binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One AMQP (type 0) or SASL (type 1) frame on `channel`.
pub fn frame(frame_type: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let mut out = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[2, frame_type]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A described list: `0x00 0x53 code` + list of the given encoded fields.
pub fn performative(code: u8, fields: &[&[u8]]) -> Vec<u8> {
    let elements: Vec<u8> = fields.concat();
    let mut out = vec![0x00, 0x53, code, 0xd0];
    out.extend_from_slice(&((elements.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    out.extend_from_slice(&elements);
    out
}

pub fn str8(text: &str) -> Vec<u8> {
    let mut out = vec![0xa1, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// `levels` described values nested in each other around a null.
pub fn nested_described(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(levels * 3 + 1);
    for _ in 0..levels {
        bytes.extend_from_slice(&[0x00, 0x53, 0x01]);
    }
    bytes.push(0x40);
    bytes
}

/// A message with one amqp-value section holding `value`.
pub fn amqp_value_message(value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, 0x53, 0x77];
    out.extend_from_slice(value);
    out
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let len = (u32::from_be_bytes(size) as usize).clamp(8, 1 << 20);
    let mut rest = vec![0u8; len - 4];
    stream.read_exact(&mut rest).await?;
    let mut frame = size.to_vec();
    frame.extend(rest);
    Ok(frame)
}

/// A raw client: protocol headers, SASL ANONYMOUS, open, begin, and a
/// sender link (handle 0) to `target`; returns once the server granted
/// credit. Nothing here authenticates.
pub async fn raw_sender_link(addr: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    read_frame(&mut stream).await.unwrap(); // sasl-mechanisms
    let mut init = vec![0x00, 0x53, 0x41, 0xc0, 0x0c, 0x01, 0xa3, 0x09];
    init.extend_from_slice(b"ANONYMOUS");
    stream.write_all(&frame(1, 0, &init)).await.unwrap();
    read_frame(&mut stream).await.unwrap(); // sasl-outcome
    stream.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    stream.read_exact(&mut header).await.unwrap();
    let open = performative(0x10, &[&str8("raw-client")]);
    stream.write_all(&frame(0, 0, &open)).await.unwrap();
    let window = [0x70, 0x00, 0x00, 0xff, 0xff];
    let begin = performative(0x11, &[&[0x40], &[0x43], &window, &window]);
    stream.write_all(&frame(0, 0, &begin)).await.unwrap();
    let source = [0x00, 0x53, 0x28, 0x45];
    let mut target_field = vec![0x00, 0x53, 0x29];
    let address = str8(target);
    target_field.extend_from_slice(&[0xc0, (address.len() + 1) as u8, 0x01]);
    target_field.extend_from_slice(&address);
    let attach = performative(
        0x12,
        &[
            &str8("raw-link"),
            &[0x43],
            &[0x42], // role: sender
            &[0x40],
            &[0x40],
            &source,
            &target_field,
            &[0x40],
            &[0x40],
            &[0x43], // initial-delivery-count
        ],
    );
    stream.write_all(&frame(0, 0, &attach)).await.unwrap();
    // Wait for the server's flow (link credit).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no flow frame from the server");
        let received = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
            .await
            .expect("server answers")
            .expect("server keeps the connection");
        let doff = usize::from(received[4]) * 4;
        if received.get(doff..doff + 3) == Some(&[0x00, 0x53, 0x13]) {
            return stream;
        }
    }
}

/// A transfer on handle 0 with delivery id `id` carrying `payload`.
pub fn transfer(id: u32, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut delivery_id = vec![0x70];
    delivery_id.extend_from_slice(&id.to_be_bytes());
    let mut tag = vec![0xa0, 0x04];
    tag.extend_from_slice(&id.to_be_bytes());
    let mut body = performative(
        0x14,
        &[
            &[0x43],
            &delivery_id,
            &tag,
            &[0x43],
            &[0x42],
            &[if more { 0x41 } else { 0x42 }],
        ],
    );
    body.extend_from_slice(payload);
    frame(0, 0, &body)
}

/// Reads until the server closes the socket (at most `limit`); returns what
/// it sent, or `None` when it kept the connection open.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `needle` arrives or the server closes (at most `limit`);
/// returns everything received.
pub async fn read_until_contains(
    stream: &mut TcpStream,
    needle: &[u8],
    limit: Duration,
) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    while !contains(&received, needle) {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
    received
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A well-behaved client: authenticates with a SAS token through `$cbs`,
/// sends `text` to `hub` partition 0 and expects it accepted.
pub async fn authenticated_send(endpoint: &str, hub: &str, text: &str) -> Result<(), String> {
    let mut connection = Connection::builder()
        .container_id("good-client")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
        .open(endpoint)
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut session = Session::begin(&mut connection)
        .await
        .map_err(|e| format!("begin: {e}"))?;
    put_token(&mut session, hub).await?;
    let mut sender = Sender::attach(&mut session, "good-sender", format!("{hub}/Partitions/0"))
        .await
        .map_err(|e| format!("attach: {e}"))?;
    let outcome = sender
        .send(Message::builder().value(text.to_string()).build())
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !matches!(outcome, Outcome::Accepted(_)) {
        return Err(format!("outcome {outcome:?}"));
    }
    let _ = sender.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    Ok(())
}

/// An authenticated connection and session for `hub`.
pub async fn authenticated_session(
    endpoint: &str,
    hub: &str,
) -> Result<
    (
        fe2o3_amqp::connection::ConnectionHandle<()>,
        fe2o3_amqp::session::SessionHandle<()>,
    ),
    String,
> {
    let mut connection = Connection::builder()
        .container_id("good-client")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
        .open(endpoint)
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut session = Session::begin(&mut connection)
        .await
        .map_err(|e| format!("begin: {e}"))?;
    put_token(&mut session, hub).await?;
    Ok((connection, session))
}

/// Reads partition 0 of `hub` from the start until `idle` passes without an
/// event; returns the amqp-value strings in order.
pub async fn read_all_strings(endpoint: &str, hub: &str, idle: Duration) -> Vec<String> {
    let (mut connection, mut session) = authenticated_session(endpoint, hub).await.unwrap();
    let mut receiver = Receiver::attach(
        &mut session,
        "reader",
        format!("{hub}/ConsumerGroups/$Default/Partitions/0"),
    )
    .await
    .unwrap();
    let mut texts = Vec::new();
    while let Ok(Ok(delivery)) = tokio::time::timeout(
        idle,
        receiver.recv::<fe2o3_amqp::types::messaging::Body<Value>>(),
    )
    .await
    {
        let _ = receiver.accept(&delivery).await;
        if let fe2o3_amqp::types::messaging::Body::Value(value) = delivery.body() {
            if let Value::String(text) = &value.0 {
                texts.push(text.clone());
            }
        }
    }
    let _ = receiver.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    texts
}

/// A connection and session without any token.
pub async fn fe2o3_session(
    endpoint: &str,
) -> (
    fe2o3_amqp::connection::ConnectionHandle<()>,
    fe2o3_amqp::session::SessionHandle<()>,
) {
    let mut connection = Connection::builder()
        .container_id("client")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Anonymous)
        .open(endpoint)
        .await
        .unwrap();
    let session = Session::begin(&mut connection).await.unwrap();
    (connection, session)
}

/// `$cbs` put-token for `hub` with a token signed by the test key.
pub async fn put_token(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    hub: &str,
) -> Result<(), String> {
    put_token_expiring(session, hub, 3600).await
}

/// `$cbs` put-token for `hub`, valid for `ttl_secs`.
pub async fn put_token_expiring(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    hub: &str,
    ttl_secs: i64,
) -> Result<(), String> {
    let mut cbs_sender = Sender::attach(session, "cbs-sender", "$cbs")
        .await
        .map_err(|e| format!("cbs attach: {e}"))?;
    let mut cbs_receiver = Receiver::attach(session, "cbs-receiver", "$cbs")
        .await
        .map_err(|e| format!("cbs receiver attach: {e}"))?;
    let resource = format!("sb://localhost/{hub}");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + ttl_secs;
    let token = sas::generate(&resource, &SasKey::new(KEY_NAME, KEY_VALUE), expires);
    let properties = ApplicationProperties::builder()
        .insert("operation", SimpleValue::String("put-token".into()))
        .insert("name", SimpleValue::String(resource))
        .insert(
            "type",
            SimpleValue::String("servicebus.windows.net:sastoken".into()),
        )
        .build();
    let request = Message::builder()
        .properties(Properties::builder().message_id(1u64).build())
        .application_properties(properties)
        .value(token)
        .build();
    cbs_sender
        .send(request)
        .await
        .map_err(|e| format!("put-token send: {e}"))?;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        cbs_receiver.recv::<fe2o3_amqp::types::messaging::Body<Value>>(),
    )
    .await
    .map_err(|_| "no put-token response".to_string())?
    .map_err(|e| format!("put-token response: {e}"))?;
    cbs_receiver.accept(&response).await.ok();
    let status = response
        .message()
        .application_properties
        .as_ref()
        .and_then(|p| p.0.get("status-code").cloned());
    if status != Some(SimpleValue::Int(202)) {
        return Err(format!("put-token status {status:?}"));
    }
    let _ = cbs_sender.close().await;
    let _ = cbs_receiver.close().await;
    Ok(())
}

/// Whether `dir` holds any file (for storage tests).
pub fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}
