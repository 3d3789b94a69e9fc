//! Link attaches: which node, sender or receiver serves a link, and the
//! refusals (with AMQP errors) for links that may not attach.

use crate::{
    address::{self, entity_path, EntityAddress, NodeKind},
    config::DEFAULT_CONSUMER_GROUP,
    filter,
    node::{run_reply_link, run_request_link},
    readers::ReaderRefusal,
    receiver::{run_delivery_link, DeliveryLink},
    sender::{run_ingest_link, SendTarget},
    session::{LinkSlot, SessionContext},
};
use fe2o3_amqp::{
    acceptor::{LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SupportedReceiverSettleModes},
    Receiver, Sender,
};
use fe2o3_amqp_types::{
    definitions::{AmqpError, Error, LinkError, ReceiverSettleMode, Role},
    messaging::TargetArchetype,
    performatives::Attach,
    primitives::{Symbol, Value},
};
use std::{sync::Arc, time::Duration};

/// Link property carrying an exclusive reader's epoch (owner level).
pub(crate) const EPOCH_PROPERTY: &str = "com.microsoft:epoch";

/// Runs a link's task; the session's link count drops when it ends.
fn spawn_link(slot: LinkSlot, task: impl std::future::Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        task.await;
        drop(slot);
    });
}

fn target_address(attach: &Attach) -> Option<String> {
    match attach.target.as_deref()? {
        TargetArchetype::Target(target) => target.address.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn source_address(attach: &Attach) -> Option<String> {
    attach.source.as_ref()?.address.clone()
}

fn refusal(
    condition: impl Into<fe2o3_amqp_types::definitions::ErrorCondition>,
    text: String,
) -> Error {
    Error::new(condition, text, None)
}

/// Accepts or refuses one incoming attach and starts the task serving the link.
pub(crate) async fn route_attach(
    attach: Attach,
    session: &mut ListenerSessionHandle,
    ctx: &Arc<SessionContext>,
) -> Result<(), fe2o3_amqp::acceptor::error::AcceptorAttachError> {
    let link_name = attach.name.clone();
    // Held by the task serving the link; `None` when the session is full.
    let slot = ctx.claim_link();
    let limit_error = || {
        refusal(
            AmqpError::ResourceLimitExceeded,
            format!(
                "A session may have at most {} links open.",
                ctx.broker.limits.max_links_per_session
            ),
        )
    };
    match attach.role {
        // The client sends: requests to a node, or events.
        Role::Sender => {
            let address = target_address(&attach);
            let node = address.as_deref().and_then(NodeKind::from_address);
            if let (Some(node), Some(slot)) = (node, &slot) {
                let receiver = accept_receiver(&LinkAcceptor::new(), attach, session).await?;
                spawn_link(slot.clone(), run_request_link(receiver, node, ctx.clone()));
                return Ok(());
            }
            let decision = match slot {
                Some(_) => resolve_send_target(address.as_deref(), ctx),
                None => Err(limit_error()),
            };
            let mut attach = attach;
            if decision.is_err() {
                // A refused link answers with a null terminus, then detaches
                // with the error (AMQP 1.0, 2.6.3).
                attach.target = None;
            }
            // Settle on our side first: the SDKs wait for a settled outcome.
            let acceptor = LinkAcceptor::builder()
                .max_message_size(ctx.broker.max_message_size)
                .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
                .fallback_receiver_settle_mode(ReceiverSettleMode::First)
                .build();
            let receiver = accept_receiver(&acceptor, attach, session).await?;
            match decision {
                Ok(target) => {
                    tracing::debug!(link = %link_name, hub = %target.hub.name, partition = ?target.partition, "sender attached");
                    if let Some(slot) = slot {
                        spawn_link(slot, run_ingest_link(receiver, target, ctx.clone()));
                    }
                }
                Err(error) => {
                    tracing::info!(link = %link_name, ?address, description = ?error.description, "sender link refused");
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            receiver.close_with_error(error),
                        )
                        .await;
                    });
                }
            }
        }
        // The client receives: responses from a node, or events.
        Role::Receiver => {
            let address = source_address(&attach);
            let node = address.as_deref().and_then(NodeKind::from_address);
            if let (Some(node), Some(slot)) = (node, &slot) {
                let sender = accept_sender(&LinkAcceptor::new(), attach, session).await?;
                spawn_link(slot.clone(), run_reply_link(sender, node, ctx.clone()));
                return Ok(());
            }
            let decision = match slot {
                Some(_) => resolve_delivery(&attach, address.as_deref(), ctx),
                None => Err(limit_error()),
            };
            let mut attach = attach;
            if decision.is_err() {
                attach.source = None;
            }
            let acceptor = LinkAcceptor::builder()
                .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
                .fallback_receiver_settle_mode(ReceiverSettleMode::First)
                .initial_delivery_count(0)
                .build();
            let sender = accept_sender(&acceptor, attach, session).await?;
            match decision {
                Ok(link) => {
                    tracing::debug!(link = %link_name, next_sequence = link.next_sequence, "receiver attached");
                    if let Some(slot) = slot {
                        spawn_link(slot, run_delivery_link(sender, link));
                    }
                }
                Err(error) => {
                    tracing::info!(link = %link_name, ?address, description = ?error.description, "receiver link refused");
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            sender.close_with_error(error),
                        )
                        .await;
                    });
                }
            }
        }
    }
    Ok(())
}

async fn accept_receiver<FS, FT>(
    acceptor: &LinkAcceptor<FS, FT>,
    attach: Attach,
    session: &mut ListenerSessionHandle,
) -> Result<Receiver, fe2o3_amqp::acceptor::error::AcceptorAttachError>
where
    FS: Fn(fe2o3_amqp_types::messaging::Source) -> Option<fe2o3_amqp_types::messaging::Source>,
    FT: Fn(fe2o3_amqp_types::messaging::Target) -> Option<fe2o3_amqp_types::messaging::Target>,
{
    match acceptor.accept_incoming_attach(attach, session).await? {
        LinkEndpoint::Receiver(receiver) => Ok(receiver),
        LinkEndpoint::Sender(_) => {
            Err(fe2o3_amqp::acceptor::error::AcceptorAttachError::IllegalSessionState)
        }
    }
}

async fn accept_sender<FS, FT>(
    acceptor: &LinkAcceptor<FS, FT>,
    attach: Attach,
    session: &mut ListenerSessionHandle,
) -> Result<Sender, fe2o3_amqp::acceptor::error::AcceptorAttachError>
where
    FS: Fn(fe2o3_amqp_types::messaging::Source) -> Option<fe2o3_amqp_types::messaging::Source>,
    FT: Fn(fe2o3_amqp_types::messaging::Target) -> Option<fe2o3_amqp_types::messaging::Target>,
{
    match acceptor.accept_incoming_attach(attach, session).await? {
        LinkEndpoint::Sender(sender) => Ok(sender),
        LinkEndpoint::Receiver(_) => {
            Err(fe2o3_amqp::acceptor::error::AcceptorAttachError::IllegalSessionState)
        }
    }
}

fn check_auth(ctx: &SessionContext, path: &str) -> Result<(), Error> {
    if ctx.broker.no_auth || ctx.auth.allows(path) {
        Ok(())
    } else {
        Err(refusal(
            AmqpError::UnauthorizedAccess,
            format!("Unauthorized access to '{path}': put a valid token on $cbs first."),
        ))
    }
}

fn parse_entity(address: Option<&str>) -> Result<EntityAddress, Error> {
    address::parse(address).map_err(|e| refusal(AmqpError::NotFound, e.to_string()))
}

fn resolve_send_target(address: Option<&str>, ctx: &SessionContext) -> Result<SendTarget, Error> {
    let entity = parse_entity(address)?;
    if entity.consumer_group.is_some() {
        return Err(refusal(
            AmqpError::NotAllowed,
            "Events cannot be sent to a consumer group address.".into(),
        ));
    }
    let path = entity_path(address.unwrap_or_default()).to_ascii_lowercase();
    check_auth(ctx, &path)?;
    let hub = ctx.broker.hubs.resolve(&entity.hub).ok_or_else(|| {
        refusal(
            AmqpError::NotFound,
            format!("The messaging entity '{}' could not be found.", entity.hub),
        )
    })?;
    let partition = match &entity.partition {
        Some(id) => {
            hub.partition(id).ok_or_else(|| {
                refusal(
                    AmqpError::NotFound,
                    format!("The partition '{id}' of '{}' could not be found.", hub.name),
                )
            })?;
            id.parse::<usize>().ok()
        }
        None => None,
    };
    Ok(SendTarget {
        hub,
        partition,
        entity_path: path,
    })
}

fn epoch_of(attach: &Attach) -> Result<Option<i64>, Error> {
    let Some(value) = attach
        .properties
        .as_ref()
        .and_then(|p| p.get(&Symbol::from(EPOCH_PROPERTY)))
    else {
        return Ok(None);
    };
    let epoch = match value {
        Value::Long(v) => *v,
        Value::Int(v) => i64::from(*v),
        Value::Short(v) => i64::from(*v),
        Value::Byte(v) => i64::from(*v),
        Value::Uint(v) => i64::from(*v),
        Value::Ushort(v) => i64::from(*v),
        Value::Ubyte(v) => i64::from(*v),
        Value::Ulong(v) => i64::try_from(*v).unwrap_or(i64::MAX),
        other => {
            return Err(refusal(
                AmqpError::InvalidField,
                format!("{EPOCH_PROPERTY} must be a long, got {other:?}"),
            ))
        }
    };
    Ok(Some(epoch))
}

fn resolve_delivery(
    attach: &Attach,
    address: Option<&str>,
    ctx: &SessionContext,
) -> Result<DeliveryLink, Error> {
    let entity = parse_entity(address)?;
    let (Some(group), Some(partition)) = (
        entity.consumer_group.as_deref(),
        entity.partition.as_deref(),
    ) else {
        return Err(refusal(
            AmqpError::NotFound,
            "Receivers must name <hub>/ConsumerGroups/<group>/Partitions/<id>.".into(),
        ));
    };
    let path = entity_path(address.unwrap_or_default()).to_ascii_lowercase();
    check_auth(ctx, &path)?;
    let position = filter::start_position(attach.source.as_ref().and_then(|s| s.filter.as_ref()))
        .map_err(|e| refusal(AmqpError::InvalidField, e.to_string()))?;
    let epoch = epoch_of(attach)?;
    let broker = &ctx.broker;
    let hub = broker.hubs.resolve(&entity.hub).ok_or_else(|| {
        refusal(
            AmqpError::NotFound,
            format!("The messaging entity '{}' could not be found.", entity.hub),
        )
    })?;
    if !hub.has_consumer_group(group) && !group.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
        return Err(refusal(
            AmqpError::NotFound,
            format!(
                "The consumer group '{group}' of '{}' could not be found.",
                hub.name
            ),
        ));
    }
    let log = hub.partition(partition).cloned().ok_or_else(|| {
        refusal(
            AmqpError::NotFound,
            format!(
                "The partition '{partition}' of '{}' could not be found.",
                hub.name
            ),
        )
    })?;
    let guard = broker
        .readers
        .register(&hub.name, group, partition, epoch)
        .map_err(|refused| match refused {
            ReaderRefusal::TooManyReaders => {
                refusal(AmqpError::ResourceLimitExceeded, refused.to_string())
            }
            _ => refusal(LinkError::Stolen, refused.to_string()),
        })?;
    Ok(DeliveryLink {
        next_sequence: log.resolve(&position),
        log,
        guard,
        shutdown: broker.shutdown.clone(),
        auth: (!broker.no_auth).then(|| ctx.auth.clone()),
        entity_path: path,
    })
}
