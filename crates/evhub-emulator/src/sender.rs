//! Links on which clients send events: size check, batch unpacking, partition
//! choice (explicit, by key, or round robin) and append.

use crate::{
    depth::{DepthScanner, MAX_NESTING_DEPTH},
    detach::{end_receiver, ClientDetach},
    hub::Hub,
    message::{partition_key_of, OpaqueMessage, PARTITION_KEY},
    session::SessionContext,
    settle::DISPOSITION_DELAY,
};
use fe2o3_amqp::{
    link::{delivery::DeliveryInfo, RecvError},
    Receiver,
};
use fe2o3_amqp_types::{
    definitions::{AmqpError, Error, ErrorCondition, LinkError},
    messaging::{
        annotations::OwnedKey,
        message::__private::{Deserializable, Serializable},
        Body, MessageAnnotations,
    },
    primitives::{Symbol, Value},
};
use serde_amqp::lazy::LazyValue;
use std::{sync::Arc, time::Duration};

/// Message format of an Event Hubs batch: one `data` section per encoded event.
pub(crate) const BATCH_MESSAGE_FORMAT: u32 = 0x8001_3700;

/// Error condition for a message over the size limit.
pub(crate) const MESSAGE_SIZE_EXCEEDED: &str = "com.microsoft:message-size-exceeded";

/// Where a sender link's events go.
#[derive(Debug, Clone)]
pub(crate) struct SendTarget {
    pub hub: Arc<Hub>,
    pub partition: Option<usize>,
    /// Lower-case entity path, checked against the connection's tokens.
    pub entity_path: String,
}

pub(crate) async fn run_ingest_link(
    mut receiver: Receiver,
    target: SendTarget,
    ctx: Arc<SessionContext>,
) {
    let shutdown = ctx.broker.shutdown.clone();
    let disposer = receiver.disposer();
    let (settle_tx, mut settle_rx) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, DeliveryInfo)>();
    let settle_task = tokio::spawn(async move {
        while let Some((due, info)) = settle_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if let Err(error) = disposer.accept(info).await {
                tracing::debug!(%error, "could not settle a delivery");
            }
        }
    });
    let mut how = ClientDetach::Closed;
    loop {
        let delivery = tokio::select! {
            delivery = receiver.recv::<Body<LazyValue>>() => delivery,
            _ = shutdown.cancelled() => break,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(RecvError::LinkStateError(error)) => {
                tracing::debug!(hub = %target.hub.name, %error, "sender link ended");
                how = ClientDetach::from_link_state(&error);
                break;
            }
            Err(error) => {
                // A protocol error on this link: close it with an AMQP error.
                // fe2o3 clients split a message larger than the link's
                // max-message-size into several transfers with different
                // delivery ids, which shows up as inconsistent fields.
                let condition = match error {
                    RecvError::InconsistentFieldInMultiFrameDelivery => {
                        ErrorCondition::LinkError(LinkError::MessageSizeExceeded)
                    }
                    _ => ErrorCondition::AmqpError(AmqpError::DecodeError),
                };
                tracing::info!(hub = %target.hub.name, %error, "closing sender link after a protocol error");
                drop(settle_tx);
                let _ = tokio::time::timeout(Duration::from_secs(2), settle_task).await;
                let error = Error::new(condition, format!("{error}"), None);
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), receiver.close_with_error(error))
                        .await;
                return;
            }
        };
        let format = delivery.message_format().unwrap_or(0);
        tracing::trace!(hub = %target.hub.name, delivery_id = delivery.delivery_id(), format, "delivery received");
        let (info, message): (DeliveryInfo, OpaqueMessage) = delivery.into_parts();
        let result = match ingest(message, format, &target, &ctx).await {
            Ok(count) => {
                tracing::trace!(hub = %target.hub.name, count, "events stored");
                // Settled later by the settle task (see DISPOSITION_DELAY).
                let _ = settle_tx.send((tokio::time::Instant::now() + DISPOSITION_DELAY, info));
                Ok(())
            }
            Err(error) => {
                tracing::info!(hub = %target.hub.name, condition = ?error.condition, description = ?error.description, "message rejected");
                tokio::time::sleep(DISPOSITION_DELAY).await;
                receiver.reject(info, error).await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "could not settle a delivery");
        }
    }
    drop(settle_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), settle_task).await;
    end_receiver(receiver, how).await;
}

async fn ingest(
    message: OpaqueMessage,
    format: u32,
    target: &SendTarget,
    ctx: &SessionContext,
) -> Result<usize, Error> {
    let broker = &ctx.broker;
    if !broker.no_auth && !ctx.auth.allows(&target.entity_path) {
        return Err(Error::new(
            AmqpError::UnauthorizedAccess,
            "Unauthorized access: the token for this entity is missing or expired.".to_string(),
            None,
        ));
    }
    let size = serde_amqp::size_ser::serialized_size(&Serializable(&message)).map_err(|e| {
        Error::new(
            AmqpError::DecodeError,
            format!("cannot size message: {e}"),
            None,
        )
    })?;
    if size as u64 > broker.max_message_size {
        return Err(Error::new(
            ErrorCondition::Custom(Symbol::from(MESSAGE_SIZE_EXCEEDED)),
            format!(
                "The received message (size: {size} bytes) exceeds the limit ({} bytes) currently allowed on the link.",
                broker.max_message_size
            ),
            None,
        ));
    }
    let outer_key = partition_key_of(&message);
    let events = if format == BATCH_MESSAGE_FORMAT {
        unpack_batch(message, outer_key.as_deref())?
    } else {
        vec![message]
    };
    if events.is_empty() {
        return Ok(0);
    }
    let key = outer_key.or_else(|| partition_key_of(&events[0]));
    let index = target
        .partition
        .unwrap_or_else(|| target.hub.choose_partition(key.as_deref()));
    let count = events.len();
    let log = target.hub.partitions.get(index).ok_or_else(|| {
        Error::new(
            AmqpError::NotFound,
            format!("partition {index} does not exist"),
            None,
        )
    })?;
    let store_error = |e: crate::error::EmulatorError| {
        tracing::error!(error = %e, "could not store events");
        Error::new(
            AmqpError::InternalError,
            "The event store failed.".to_string(),
            None,
        )
    };
    if log.is_persistent() {
        // Writing (and with fsync `always`, syncing) blocks: keep it off the
        // async workers so other links keep being served meanwhile.
        let log = log.clone();
        tokio::task::spawn_blocking(move || log.append(events))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "event store task failed");
                Error::new(
                    AmqpError::InternalError,
                    "The event store failed.".to_string(),
                    None,
                )
            })?
            .map_err(store_error)?;
    } else {
        log.append(events).map_err(store_error)?;
    }
    Ok(count)
}

fn unpack_batch(message: OpaqueMessage, key: Option<&str>) -> Result<Vec<OpaqueMessage>, Error> {
    let sections = match message.body {
        Body::Data(batch) => batch,
        Body::Empty => return Ok(Vec::new()),
        _ => {
            return Err(Error::new(
                AmqpError::DecodeError,
                "A batch message must carry data sections.".to_string(),
                None,
            ))
        }
    };
    let mut events = Vec::with_capacity(sections.len());
    for (index, section) in sections.into_iter().enumerate() {
        // The entry is decoded here (its annotations are needed): check its
        // nesting first, as the inbound guard does for whole messages.
        if DepthScanner::for_message(MAX_NESTING_DEPTH)
            .feed(&section.0)
            .is_err()
        {
            return Err(Error::new(
                AmqpError::DecodeError,
                format!("Batch entry {index} nests deeper than {MAX_NESTING_DEPTH} levels."),
                None,
            ));
        }
        let mut event = serde_amqp::from_slice::<Deserializable<OpaqueMessage>>(&section.0)
            .map_err(|e| {
                Error::new(
                    AmqpError::DecodeError,
                    format!("Batch entry {index} is not an AMQP message: {e}"),
                    None,
                )
            })?
            .0;
        if let (Some(key), None) = (key, partition_key_of(&event)) {
            event
                .message_annotations
                .get_or_insert_with(|| MessageAnnotations(Default::default()))
                .0
                .insert(
                    OwnedKey::Symbol(Symbol::from(PARTITION_KEY)),
                    Value::String(key.to_string()),
                );
        }
        events.push(event);
    }
    Ok(events)
}
