//! Structure-aware fuzzing of the AMQP frame path, on stable Rust and
//! without extra tools: a seeded generator builds plausible connections
//! (protocol headers, SASL, open, begin, attach to nodes and hubs, flow,
//! transfers with message sections, disposition, detach, end, close), mutates
//! them (flipped bytes, wrong sizes, truncation, reordering, huge counts,
//! deep nesting, endless `more` transfers) and feeds each to the emulator
//! binary over 127.0.0.1.
//!
//! After the run the emulator must still be alive, answer a normal client,
//! and its resident memory must have stayed under [`RSS_BOUND_KIB`].
//!
//! `cargo test` runs `DEFAULT_CASES` cases; set `EVHUB_FUZZ_CASES=N` for a
//! longer run and `EVHUB_FUZZ_SEED=S` to replay a seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const DEFAULT_CASES: u64 = 400;
const PARALLEL: u64 = 8;
/// Resident memory the emulator must stay under during the run.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// xorshift64*: small, seedable, good enough for input generation.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn list(fields: &[Vec<u8>]) -> Vec<u8> {
    let elements: Vec<u8> = fields.concat();
    let mut out = vec![0xd0];
    out.extend_from_slice(&((elements.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    out.extend_from_slice(&elements);
    out
}

fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let elements: Vec<u8> = entries
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()].concat())
        .collect();
    let mut out = vec![0xd1];
    out.extend_from_slice(&((elements.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&((entries.len() * 2) as u32).to_be_bytes());
    out.extend_from_slice(&elements);
    out
}

fn described(code: u8, value: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0x00, 0x53, code];
    out.extend(value);
    out
}

fn sym(text: &str) -> Vec<u8> {
    let mut out = vec![0xa3, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// A random AMQP value, nested at most `depth` levels.
fn value(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let choice = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(10)
    };
    match choice {
        0 => vec![0x40],
        1 => vec![0x41],
        2 => vec![0x54, rng.next() as u8],
        3 => {
            let mut v = vec![0x81];
            v.extend(rng.bytes(8));
            v
        }
        4 => str8(&format!("s{}", rng.below(1000))),
        5 => {
            let n = rng.below(40) as usize;
            let mut v = vec![0xa0, n as u8];
            v.extend(rng.bytes(n));
            v
        }
        6 => list(
            &(0..rng.below(4))
                .map(|_| value(rng, depth - 1))
                .collect::<Vec<_>>(),
        ),
        7 => map(&(0..rng.below(3))
            .map(|_| (str8("k"), value(rng, depth - 1)))
            .collect::<Vec<_>>()),
        8 => described(rng.below(256) as u8, value(rng, depth - 1)),
        _ => {
            // array8 of small ints
            let n = rng.below(5) as u8;
            let mut v = vec![0xe0, 2 + n, n, 0x51];
            v.extend(rng.bytes(n as usize));
            v
        }
    }
}

/// A message: some of header, annotations, properties, application
/// properties, then a data, sequence or value body (sometimes nested deep).
fn message(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.chance(30) {
        out.extend(described(0x70, list(&[vec![0x41]])));
    }
    if rng.chance(50) {
        out.extend(described(
            0x72,
            map(&[
                (sym("x-opt-partition-key"), str8("key")),
                (sym("x-other"), value(rng, 3)),
            ]),
        ));
    }
    if rng.chance(40) {
        out.extend(described(
            0x73,
            list(&[
                str8("id"),
                vec![0x40],
                vec![0x40],
                vec![0x40],
                str8("reply"),
            ]),
        ));
    }
    if rng.chance(40) {
        out.extend(described(
            0x74,
            map(&[
                (str8("operation"), str8("put-token")),
                (str8("name"), str8("sb://x/hub")),
            ]),
        ));
    }
    match rng.below(4) {
        0 => {
            let n = rng.below(200) as usize;
            let mut data = vec![0xb0];
            data.extend_from_slice(&(n as u32).to_be_bytes());
            data.extend(rng.bytes(n));
            out.extend(described(0x75, data));
        }
        1 => out.extend(described(0x76, list(&[value(rng, 3)]))),
        2 => out.extend(described(0x77, value(rng, 4))),
        _ => {
            // Deep nesting, in the body or in annotations.
            let levels = *rng.pick(&[50, 70, 300, 3000, 20_000]);
            let deep = nested_described(levels);
            if rng.chance(50) {
                out.extend(described(0x77, deep));
            } else {
                out.extend(described(0x72, deep));
                out.extend(described(0x77, vec![0x40]));
            }
        }
    }
    out
}

fn amqp(body: Vec<u8>) -> Vec<u8> {
    frame(0, 0, &body)
}

fn attach(rng: &mut Rng, handle: u8) -> Vec<u8> {
    let addresses = [
        "$cbs",
        "$management",
        "hub",
        "hub/Partitions/0",
        "hub/ConsumerGroups/$Default/Partitions/1",
        "nope",
        "",
    ];
    let address = rng.pick(&addresses).to_string();
    let role_receiver = rng.chance(40);
    let terminus = described(0x28, list(&[str8(&address)]));
    let mut filter_source = terminus.clone();
    if role_receiver && rng.chance(50) {
        let filter = map(&[(
            sym("apache.org:selector-filter:string"),
            described(0x80, str8("amqp.annotation.x-opt-offset > '-1'")),
        )]);
        filter_source = described(
            0x28,
            list(&[
                str8(&address),
                vec![0x40],
                vec![0x40],
                vec![0x40],
                vec![0x40],
                vec![0x40],
                vec![0x40],
                filter,
            ]),
        );
    }
    let target = described(0x29, list(&[str8(&address)]));
    amqp(described(
        0x12,
        list(&[
            str8(&format!("link{handle}")),
            vec![0x52, handle],
            vec![if role_receiver { 0x41 } else { 0x42 }],
            vec![0x40],
            vec![0x40],
            filter_source,
            target,
            vec![0x40],
            vec![0x40],
            vec![0x43],
        ]),
    ))
}

fn transfer_frame(rng: &mut Rng, handle: u8, id: u32, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = described(
        0x14,
        list(&[
            vec![0x52, handle],
            [vec![0x70], id.to_be_bytes().to_vec()].concat(),
            [vec![0xa0, 4], id.to_be_bytes().to_vec()].concat(),
            vec![0x43],
            vec![if rng.chance(30) { 0x41 } else { 0x42 }],
            vec![if more { 0x41 } else { 0x42 }],
        ]),
    );
    body.extend_from_slice(payload);
    amqp(body)
}

/// One connection's worth of frames, before mutation.
fn connection(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut frames = vec![b"AMQP\x03\x01\x00\x00".to_vec()];
    let mechanism = if rng.chance(80) { "ANONYMOUS" } else { "PLAIN" };
    let mut init = vec![0x00, 0x53, 0x41];
    init.extend(list(&[
        sym(mechanism),
        [vec![0xa0, 3], b"\0a\0".to_vec()].concat(),
    ]));
    frames.push(frame(1, 0, &init));
    frames.push(b"AMQP\x00\x01\x00\x00".to_vec());
    frames.push(amqp(described(
        0x10,
        list(&[str8("fuzz"), vec![0x40], vec![0x70, 0, 1, 0, 0]]),
    )));
    let window = vec![0x70, 0, 0, 0xff, 0xff];
    frames.push(amqp(described(
        0x11,
        list(&[vec![0x40], vec![0x43], window.clone(), window]),
    )));
    let links = 1 + rng.below(3) as u8;
    for handle in 0..links {
        frames.push(attach(rng, handle));
    }
    let flow = described(
        0x13,
        list(&[
            vec![0x43],
            vec![0x70, 0, 0, 0xff, 0xff],
            vec![0x43],
            vec![0x70, 0, 0, 0xff, 0xff],
            vec![0x52, 0],
            vec![0x43],
            vec![0x70, 0, 0, 1, 0],
        ]),
    );
    frames.push(amqp(flow));
    for id in 0..rng.below(5) as u32 {
        let handle = rng.below(u64::from(links)) as u8;
        let payload = message(rng);
        if rng.chance(25) {
            // Split over several frames with more = true (sometimes never ending).
            let endless = rng.chance(30);
            let pieces = if endless {
                40
            } else {
                2 + rng.below(3) as usize
            };
            let chunk = if endless {
                vec![0x40; 60 * 1024]
            } else {
                payload.clone()
            };
            for piece in 0..pieces {
                let last = piece + 1 == pieces && !endless;
                frames.push(transfer_frame(rng, handle, id, !last, &chunk));
            }
        } else {
            frames.push(transfer_frame(rng, handle, id, false, &payload));
        }
    }
    if rng.chance(50) {
        frames.push(amqp(described(
            0x15,
            list(&[
                vec![0x41],
                vec![0x43],
                vec![0x40],
                vec![0x41],
                described(0x24, vec![0x45]),
            ]),
        )));
    }
    if rng.chance(50) {
        frames.push(amqp(described(0x16, list(&[vec![0x43], vec![0x41]]))));
    }
    if rng.chance(50) {
        frames.push(amqp(described(0x17, vec![0x45])));
    }
    if rng.chance(50) {
        frames.push(amqp(described(0x18, vec![0x45])));
    }
    frames
}

/// Damages some frames.
fn mutate(rng: &mut Rng, frames: &mut Vec<Vec<u8>>) {
    let mutations = rng.below(4);
    for _ in 0..mutations {
        if frames.is_empty() {
            return;
        }
        let index = rng.below(frames.len() as u64) as usize;
        match rng.below(9) {
            0 => {
                let frame = &mut frames[index];
                if !frame.is_empty() {
                    let at = rng.below(frame.len() as u64) as usize;
                    frame[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let len = frames[index].len() as u64;
                frames[index].truncate(rng.below(len) as usize);
            }
            2 => {
                let n = 1 + rng.below(64) as usize;
                let junk = rng.bytes(n);
                frames.insert(index, junk);
            }
            3 => {
                let copy = frames[index].clone();
                frames.insert(index, copy);
            }
            4 => {
                let other = rng.below(frames.len() as u64) as usize;
                frames.swap(index, other);
            }
            5 => {
                // A size field that lies.
                if frames[index].len() >= 4 {
                    let size = rng.next() as u32 % 200_000;
                    frames[index][..4].copy_from_slice(&size.to_be_bytes());
                }
            }
            6 => {
                // Huge element counts in a list32.
                let frame = &mut frames[index];
                if let Some(at) = frame.iter().position(|b| *b == 0xd0) {
                    if frame.len() >= at + 9 {
                        frame[at + 5..at + 9].copy_from_slice(&u32::MAX.to_be_bytes());
                    }
                }
            }
            7 => {
                frames.remove(index);
            }
            _ => {
                // A performative nested deep.
                let deep = nested_described(*rng.pick(&[65, 500, 10_000]));
                frames.insert(index, amqp(described(0x12, list(&[deep]))));
            }
        }
    }
}

async fn run_case(addr: std::net::SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut frames = connection(&mut rng);
    if rng.chance(85) {
        mutate(&mut rng, &mut frames);
    }
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        return;
    };
    let (mut reader, mut writer) = stream.split();
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), reader.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
    };
    let write = async {
        for frame in &frames {
            // Random chunking exercises the frame reassembly.
            let mut rest = frame.as_slice();
            while !rest.is_empty() {
                let n = (1 + rng.below(rest.len() as u64) as usize).min(rest.len());
                if writer.write_all(&rest[..n]).await.is_err() {
                    return;
                }
                rest = &rest[n..];
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(write, drain);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_frames_never_take_the_emulator_down() {
    let cases: u64 = std::env::var("EVHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("EVHUB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    // The child's log goes to a file: a panic in any task (which would end
    // only that task, not the process) counts as a crash too.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("emulator.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut emulator = ChildEmulator::start_with_stderr(
        &[
            "--hub",
            "hub:2",
            "--no-auth",
            "--auto-create-hubs=1",
            "--max-auto-created-hubs",
            "4",
        ],
        log_file.into(),
    );
    let started = Instant::now();
    let mut max_rss = emulator.rss_kib();
    let mut next = 0;
    while next < cases {
        let batch: Vec<u64> = (next..(next + PARALLEL).min(cases)).collect();
        next += batch.len() as u64;
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|case| tokio::spawn(run_case(emulator.addr, seed.wrapping_add(case))))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        max_rss = max_rss.max(emulator.rss_kib());
        if !emulator.alive() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("the emulator died during the case batch ending at {next} (seed {seed}); log tail: {tail:#?}");
        }
        assert!(
            max_rss < RSS_BOUND_KIB,
            "RSS {max_rss} KiB over the bound after {next} cases (seed {seed})"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(emulator.alive(), "the emulator died (seed {seed})");
    tokio::time::timeout(
        Duration::from_secs(20),
        authenticated_send(&emulator.endpoint(), "hub", "after-fuzzing"),
    )
    .await
    .expect("a normal client is answered in time")
    .expect("a normal client is served after fuzzing");
    max_rss = max_rss.max(emulator.rss_kib());
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
    assert!(
        panics.is_empty(),
        "{} task panics in the emulator (seed {seed}): {:?}",
        panics.len(),
        &panics[..panics.len().min(5)]
    );
    eprintln!(
        "fuzz: {cases} cases (seed {seed}) in {:.1} s, 0 crashes, 0 task panics, max RSS {} KiB",
        started.elapsed().as_secs_f64(),
        max_rss
    );
}
