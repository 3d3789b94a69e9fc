//! The decoder under fe2o3-amqp (serde_amqp, carried patch in `patches/`)
//! refuses deeply nested values instead of overflowing the stack. Without
//! the patch these tests abort the test process with a stack overflow.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fe2o3_amqp_types::{
    messaging::{message::__private::Deserializable, Body, Message},
    primitives::Value,
};

/// `levels` described values nested in each other around a null.
fn nested_described(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(levels * 3 + 1);
    for _ in 0..levels {
        bytes.extend_from_slice(&[0x00, 0x53, 0x01]);
    }
    bytes.push(0x40);
    bytes
}

/// `levels` one-element lists (list32) nested in each other around a null.
fn nested_lists(levels: usize) -> Vec<u8> {
    let mut inner = vec![0x40];
    for _ in 0..levels {
        let mut outer = vec![0xd0];
        outer.extend_from_slice(&((inner.len() + 4) as u32).to_be_bytes());
        outer.extend_from_slice(&1u32.to_be_bytes());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    inner
}

/// An AMQP message whose only section is an amqp-value holding `value`.
fn value_message(value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x53, 0x77];
    bytes.extend_from_slice(value);
    bytes
}

/// Runs `f` on a thread with the stack size of a tokio worker (2 MiB).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .expect("decoder thread panicked")
}

#[test]
fn serde_amqp_rejects_deep_nesting_without_overflow() {
    on_small_stack(|| {
        for levels in [300, 3_000, 20_000] {
            let described = nested_described(levels);
            assert!(
                serde_amqp::from_slice::<Value>(&described).is_err(),
                "{levels} described levels decoded"
            );
            let lists = nested_lists(levels);
            assert!(
                serde_amqp::from_slice::<Value>(&lists).is_err(),
                "{levels} list levels decoded"
            );
            let message = value_message(&described);
            let decoded = serde_amqp::from_slice::<Deserializable<Message<Body<Value>>>>(&message);
            assert!(decoded.is_err(), "{levels}-level message decoded");
        }
    });
}

#[test]
fn moderate_nesting_still_decodes() {
    on_small_stack(|| {
        for levels in [1, 10, 40] {
            let value: Value = serde_amqp::from_slice(&nested_lists(levels))
                .unwrap_or_else(|e| panic!("{levels} list levels: {e}"));
            let mut depth = 0;
            let mut current = &value;
            while let Value::List(items) = current {
                depth += 1;
                current = &items[0];
            }
            assert_eq!(depth, levels);
            let message: Deserializable<Message<Body<Value>>> =
                serde_amqp::from_slice(&value_message(&nested_described(levels)))
                    .unwrap_or_else(|e| panic!("{levels} described levels: {e}"));
            assert!(matches!(message.0.body, Body::Value(_)));
        }
    });
}

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid encodings to start mutating from: performative-like described
/// lists, messages with every section, maps, arrays.
fn seeds() -> Vec<Vec<u8>> {
    let mut message = vec![0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41];
    message.extend_from_slice(&[
        0x00, 0x53, 0x72, 0xc1, 0x08, 0x02, 0xa3, 0x03, b'x', b'-', b'k', 0x54, 0x07,
    ]);
    message.extend_from_slice(&[0x00, 0x53, 0x73, 0xc0, 0x04, 0x02, 0xa1, 0x01, b'i']);
    message.extend_from_slice(&[0x00, 0x53, 0x77, 0xe0, 0x05, 0x03, 0x51, 1, 2, 3]);
    let data = [0x00, 0x53, 0x75, 0xa0, 0x03, b'a', b'b', b'c'];
    let sequence = [0x00, 0x53, 0x76, 0xc0, 0x03, 0x01, 0x43];
    let list = nested_lists(5);
    let described = value_message(&nested_described(5));
    vec![message, data.to_vec(), sequence.to_vec(), list, described]
}

/// Random mutations of valid encodings must decode or fail, never panic
/// (a panic in a connection task kills that connection's engine; in a
/// debug build an arithmetic overflow is a panic).
#[test]
fn mutated_encodings_never_panic_the_decoder() {
    let cases: usize = std::env::var("EVHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let panics = on_small_stack(move || {
        let seeds = seeds();
        let mut rng = Rng(0x0dec_0de5_eed5);
        let mut panics = Vec::new();
        for case in 0..cases {
            let mut bytes = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => {
                        bytes[at] =
                            [0x00, 0x40, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0xff][rng.below(9)]
                    }
                    2 => bytes.truncate(at.max(1)),
                    _ => {
                        let junk = rng.next().to_be_bytes();
                        bytes.splice(at..at, junk);
                    }
                }
            }
            let input = bytes.clone();
            let outcome = std::panic::catch_unwind(move || {
                let _ = serde_amqp::from_slice::<Value>(&input);
                let _ = serde_amqp::from_slice::<Deserializable<Message<Body<Value>>>>(&input);
                let _ = serde_amqp::from_slice::<
                    Deserializable<Message<Body<serde_amqp::lazy::LazyValue>>>,
                >(&input);
            });
            if outcome.is_err() {
                panics.push((case, bytes));
            }
        }
        panics
    });
    assert!(
        panics.is_empty(),
        "{} inputs panicked the decoder, first: {:02x?}",
        panics.len(),
        panics.first()
    );
}
