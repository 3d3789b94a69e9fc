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
