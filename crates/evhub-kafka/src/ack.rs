//! Batch acknowledgements. librdkafka reports every message's delivery on the producer's poll
//! thread; the messages of one `send_batch` share a [`BatchAck`] that collects the reports and
//! wakes the sender once, when the last one arrived (instead of a channel, a future and a
//! wake-up per message).

use std::sync::{Arc, Mutex};

use evhub_core::{Delivery, PartitionId};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;

use crate::util::lock;

/// What a batch resolves to: deliveries in input order, or the error of the first failed
/// message in input order.
pub(crate) type BatchResult = Result<Vec<Delivery>, KafkaError>;

/// The delivery opaque of one message: its batch and its place in it (public only because
/// the client context names it).
pub struct AckSlot {
    batch: Arc<BatchAck>,
    index: usize,
}

impl AckSlot {
    /// Records the delivery report of this slot's message.
    pub fn delivered(self, result: Result<(i32, i64), KafkaError>) {
        self.batch.delivered(self.index, result);
    }
}

/// The shared state of one batch.
pub(crate) struct BatchAck {
    state: Mutex<State>,
}

struct State {
    /// Reports still to come.
    remaining: usize,
    deliveries: Vec<Delivery>,
    /// The failed message with the lowest index.
    error: Option<(usize, KafkaError)>,
    done: Option<oneshot::Sender<BatchResult>>,
}

impl BatchAck {
    /// A batch of `n` messages and the receiver of its outcome.
    pub fn new(n: usize) -> (Arc<Self>, oneshot::Receiver<BatchResult>) {
        let (tx, rx) = oneshot::channel();
        let batch = Arc::new(Self {
            state: Mutex::new(State {
                remaining: n,
                deliveries: vec![
                    Delivery {
                        partition: None,
                        offset: None,
                    };
                    n
                ],
                error: None,
                done: Some(tx),
            }),
        });
        if n == 0 {
            batch.finish(&mut lock(&batch.state));
        }
        (batch, rx)
    }

    /// The opaque of message `index`.
    pub fn slot(self: &Arc<Self>, index: usize) -> Box<AckSlot> {
        Box::new(AckSlot {
            batch: self.clone(),
            index,
        })
    }

    fn delivered(&self, index: usize, result: Result<(i32, i64), KafkaError>) {
        let mut state = lock(&self.state);
        match result {
            Ok((partition, offset)) => {
                if let Some(d) = state.deliveries.get_mut(index) {
                    *d = Delivery {
                        partition: PartitionId::try_from(partition).ok(),
                        offset: Some(offset),
                    };
                }
            }
            Err(e) => {
                if state.error.as_ref().is_none_or(|(i, _)| index < *i) {
                    state.error = Some((index, e));
                }
            }
        }
        state.remaining = state.remaining.saturating_sub(1);
        if state.remaining == 0 {
            self.finish(&mut state);
        }
    }

    /// The last `count` messages were never queued (the enqueue failed): no report will come
    /// for them.
    pub fn not_queued(&self, count: usize) {
        let mut state = lock(&self.state);
        state.remaining = state.remaining.saturating_sub(count);
        if state.remaining == 0 {
            self.finish(&mut state);
        }
    }

    fn finish(&self, state: &mut State) {
        let Some(done) = state.done.take() else {
            return;
        };
        let result = match state.error.take() {
            Some((_, e)) => Err(e),
            None => Ok(std::mem::take(&mut state.deliveries)),
        };
        // The sender may have stopped waiting (dropped its future): nothing to do then.
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    /// A batch of three and its slots.
    fn three() -> (oneshot::Receiver<BatchResult>, [Box<AckSlot>; 3]) {
        let (batch, rx) = BatchAck::new(3);
        (rx, [batch.slot(0), batch.slot(1), batch.slot(2)])
    }

    #[test]
    fn resolves_once_in_input_order_after_the_last_report() {
        let (mut rx, [a, b, c]) = three();
        c.delivered(Ok((1, 7)));
        a.delivered(Ok((0, 3)));
        assert!(rx.try_recv().is_err(), "resolved before the last report");
        b.delivered(Ok((1, 6)));
        let got = rx.try_recv().unwrap().unwrap();
        let got: Vec<_> = got.iter().map(|d| (d.partition, d.offset)).collect();
        assert_eq!(
            got,
            [(Some(0), Some(3)), (Some(1), Some(6)), (Some(1), Some(7))]
        );
    }

    #[test]
    fn the_first_failed_message_in_input_order_decides_the_error() {
        let (mut rx, [a, b, c]) = three();
        c.delivered(Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )));
        b.delivered(Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        )));
        a.delivered(Ok((0, 1)));
        let err = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(
            err,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
        );
    }

    #[test]
    fn messages_never_queued_do_not_hold_the_batch() {
        let (batch, mut rx) = BatchAck::new(4);
        let first = batch.slot(0);
        batch.not_queued(3);
        assert!(rx.try_recv().is_err());
        first.delivered(Ok((0, 0)));
        assert_eq!(rx.try_recv().unwrap().unwrap().len(), 4);
        let (_empty, mut rx) = BatchAck::new(0);
        assert!(rx.try_recv().unwrap().unwrap().is_empty());
    }
}
