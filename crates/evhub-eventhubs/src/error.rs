//! Mapping of SDK, AMQP and identity errors to [`evhub_core::ErrorKind`] with retriable flags.

use azure_core::error::ErrorKind as CoreKind;
use azure_core::http::StatusCode;
use azure_core_amqp::error::{AmqpErrorCondition, AmqpErrorKind};
use azure_core_amqp::{AmqpDescribedError, AmqpError};
use azure_messaging_eventhubs::error::ErrorKind as HubsKind;
use azure_messaging_eventhubs::EventHubsError;
use evhub_core::{Error, ErrorKind};

/// How deep the source chain is searched for a decisive AMQP condition.
const MAX_CHAIN: usize = 16;

/// A classification: kind plus whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub kind: ErrorKind,
    pub retriable: bool,
}

impl Class {
    const fn new(kind: ErrorKind, retriable: bool) -> Self {
        Self { kind, retriable }
    }
}

/// Maps an Event Hubs SDK error; `what` names the operation (never a secret).
pub(crate) fn from_hubs(what: &str, error: EventHubsError) -> Error {
    let class = classify_hubs(&error);
    build(what, class, error)
}

/// Maps an `azure_core` error (checkpoint stores, credentials, management).
pub(crate) fn from_core(what: &str, error: azure_core::Error) -> Error {
    let class = classify_chain(&error).unwrap_or_else(|| classify_core(&error));
    build(what, class, error)
}

fn build<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    class: Class,
    error: E,
) -> Error {
    let detail = short_detail(&error);
    Error::new(class.kind, format!("{what}: {detail}"))
        .with_retriable(class.retriable)
        .with_source(error)
}

/// The most specific message in the chain: the AMQP description when there is one.
fn short_detail(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    for _ in 0..MAX_CHAIN {
        let Some(e) = current else { break };
        if let Some(amqp) = e.downcast_ref::<AmqpError>() {
            if let AmqpErrorKind::AmqpDescribedError(d) = amqp.kind() {
                return describe(d);
            }
            if let AmqpErrorKind::ManagementStatusCode(code, desc) = amqp.kind() {
                return format!(
                    "management status {} {}",
                    u16::from(*code),
                    desc.as_deref().unwrap_or_default()
                );
            }
        }
        if let Some(hubs) = e.downcast_ref::<EventHubsError>() {
            if let HubsKind::SendRejected(Some(d)) | HubsKind::ConsumerDisconnected(Some(d)) =
                &hubs.kind
            {
                return describe(d);
            }
        }
        current = e.source();
    }
    error.to_string()
}

fn describe(d: &AmqpDescribedError) -> String {
    match &d.description {
        Some(text) => format!("{} ({text})", condition_name(&d.condition)),
        None => condition_name(&d.condition),
    }
}

fn condition_name(c: &AmqpErrorCondition) -> String {
    match c {
        AmqpErrorCondition::UnknownValue(v) => v.clone(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn classify_hubs(error: &EventHubsError) -> Class {
    match &error.kind {
        HubsKind::ConsumerDisconnected(_) => Class::new(ErrorKind::Conflict, false),
        HubsKind::SendRejected(Some(d)) => classify_condition(&d.condition),
        HubsKind::SendRejected(None) => Class::new(ErrorKind::Protocol, false),
        HubsKind::InvalidBatchSize { .. } => Class::new(ErrorKind::InvalidInput, false),
        HubsKind::MissingCheckpointMetadata { .. } => Class::new(ErrorKind::InvalidInput, false),
        HubsKind::SendNotAccepted(_) => Class::new(ErrorKind::Unavailable, true),
        HubsKind::InvalidManagementResponse => Class::new(ErrorKind::Protocol, false),
        HubsKind::AmqpError(e) => classify_chain(e).unwrap_or(Class::new(ErrorKind::Other, false)),
        HubsKind::AzureCore(e) => classify_chain(e).unwrap_or_else(|| classify_core(e)),
        _ => classify_chain(error).unwrap_or(Class::new(ErrorKind::Other, false)),
    }
}

/// Walks the source chain for the first AMQP error that decides the kind.
fn classify_chain(error: &(dyn std::error::Error + 'static)) -> Option<Class> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    for _ in 0..MAX_CHAIN {
        let e = current?;
        if let Some(amqp) = e.downcast_ref::<AmqpError>() {
            if let Some(class) = classify_amqp(amqp) {
                return Some(class);
            }
        }
        if let Some(hubs) = e.downcast_ref::<EventHubsError>() {
            match &hubs.kind {
                HubsKind::ConsumerDisconnected(_) => {
                    return Some(Class::new(ErrorKind::Conflict, false))
                }
                HubsKind::SendRejected(Some(d)) => return Some(classify_condition(&d.condition)),
                _ => {}
            }
        }
        if let Some(core) = e.downcast_ref::<azure_core::Error>() {
            if matches!(core.kind(), CoreKind::Credential) {
                return Some(Class::new(ErrorKind::Auth, false));
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(classify_io(io));
        }
        current = e.source();
    }
    None
}

fn classify_io(io: &std::io::Error) -> Class {
    use std::io::ErrorKind as Io;
    match io.kind() {
        Io::TimedOut => Class::new(ErrorKind::Timeout, true),
        Io::PermissionDenied => Class::new(ErrorKind::Auth, false),
        _ => Class::new(ErrorKind::Unavailable, true),
    }
}

fn classify_amqp(error: &AmqpError) -> Option<Class> {
    Some(match error.kind() {
        AmqpErrorKind::AmqpDescribedError(d) => classify_condition(&d.condition),
        AmqpErrorKind::ManagementStatusCode(code, _) => classify_status(*code),
        AmqpErrorKind::ConnectionClosedByRemote(_)
        | AmqpErrorKind::ConnectionDetachedByRemote(_)
        | AmqpErrorKind::ConnectionDropped(_)
        | AmqpErrorKind::SessionClosedByRemote(_)
        | AmqpErrorKind::SessionDetachedByRemote(_)
        | AmqpErrorKind::LinkClosedByRemote(_)
        | AmqpErrorKind::LinkDetachedByRemote(_)
        | AmqpErrorKind::TransportImplementationError(_)
        | AmqpErrorKind::FramingError(_) => {
            // A remote close may carry a described condition deeper in the chain (e.g. a
            // detach with amqp:not-found); prefer it.
            if let Some(class) = std::error::Error::source(error).and_then(classify_chain) {
                return Some(class);
            }
            Class::new(ErrorKind::Unavailable, true)
        }
        AmqpErrorKind::IdleTimeoutElapsed(_) => Class::new(ErrorKind::Timeout, true),
        AmqpErrorKind::SendRejected => Class::new(ErrorKind::Protocol, false),
        _ => return None,
    })
}

/// Maps an AMQP error condition (what the service said) to a kind.
pub(crate) fn classify_condition(condition: &AmqpErrorCondition) -> Class {
    use AmqpErrorCondition as C;
    match condition {
        C::NotFound | C::MessageNotFound | C::SessionNotFound => {
            Class::new(ErrorKind::NotFound, false)
        }
        C::UnauthorizedAccess => Class::new(ErrorKind::Auth, false),
        C::LinkStolen | C::PartitionNotOwnedError | C::StoreLockLostError => {
            Class::new(ErrorKind::Conflict, false)
        }
        C::PublisherRevokedError => Class::new(ErrorKind::Auth, false),
        C::LinkPayloadSizeExceeded => Class::new(ErrorKind::TooLarge, false),
        C::ServerBusyError | C::ResourceLimitExceeded | C::InternalError => {
            Class::new(ErrorKind::Unavailable, true)
        }
        C::ConnectionForced | C::LinkDetachForced | C::OperationCancelled | C::EntityUpdated => {
            Class::new(ErrorKind::Unavailable, true)
        }
        C::EntityDisabledError => Class::new(ErrorKind::Unavailable, false),
        C::TimeoutError => Class::new(ErrorKind::Timeout, true),
        C::ArgumentError | C::ArgumentOutOfRangeError | C::InvalidField => {
            Class::new(ErrorKind::InvalidInput, false)
        }
        C::NotAllowed | C::NotImplemented => Class::new(ErrorKind::Unsupported, false),
        C::UnknownValue(v) => match v.as_str() {
            "com.microsoft:message-size-exceeded" => Class::new(ErrorKind::TooLarge, false),
            "com.microsoft:quota-exceeded" => Class::new(ErrorKind::Unavailable, true),
            "com.microsoft:no-matching-subscription" => Class::new(ErrorKind::NotFound, false),
            _ => Class::new(ErrorKind::Protocol, false),
        },
        _ => Class::new(ErrorKind::Protocol, false),
    }
}

fn classify_status(code: StatusCode) -> Class {
    match u16::from(code) {
        404 => Class::new(ErrorKind::NotFound, false),
        401 | 403 => Class::new(ErrorKind::Auth, false),
        400 => Class::new(ErrorKind::InvalidInput, false),
        408 | 504 => Class::new(ErrorKind::Timeout, true),
        409 | 412 => Class::new(ErrorKind::Conflict, false),
        413 => Class::new(ErrorKind::TooLarge, false),
        429 | 500 | 502 | 503 => Class::new(ErrorKind::Unavailable, true),
        _ => Class::new(ErrorKind::Protocol, false),
    }
}

fn classify_core(error: &azure_core::Error) -> Class {
    match error.kind() {
        CoreKind::Credential => Class::new(ErrorKind::Auth, false),
        CoreKind::Io | CoreKind::Connection => Class::new(ErrorKind::Unavailable, true),
        CoreKind::DataConversion => Class::new(ErrorKind::Protocol, false),
        CoreKind::HttpResponse { status, .. } => classify_status(*status),
        _ => Class::new(ErrorKind::Other, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::AmqpOrderedMap;

    fn described(condition: AmqpErrorCondition, text: &str) -> AmqpError {
        AmqpError::from(AmqpErrorKind::AmqpDescribedError(AmqpDescribedError::new(
            condition,
            Some(text.to_owned()),
            AmqpOrderedMap::new(),
        )))
    }

    #[test]
    fn conditions_map_to_kinds_and_retriable_flags() {
        let cases = [
            (AmqpErrorCondition::NotFound, ErrorKind::NotFound, false),
            (
                AmqpErrorCondition::UnauthorizedAccess,
                ErrorKind::Auth,
                false,
            ),
            (AmqpErrorCondition::LinkStolen, ErrorKind::Conflict, false),
            (
                AmqpErrorCondition::ServerBusyError,
                ErrorKind::Unavailable,
                true,
            ),
            (AmqpErrorCondition::TimeoutError, ErrorKind::Timeout, true),
            (
                AmqpErrorCondition::LinkPayloadSizeExceeded,
                ErrorKind::TooLarge,
                false,
            ),
            (
                AmqpErrorCondition::UnknownValue("com.microsoft:message-size-exceeded".into()),
                ErrorKind::TooLarge,
                false,
            ),
        ];
        for (condition, kind, retriable) in cases {
            let e = from_hubs(
                "send",
                EventHubsError::from(described(condition.clone(), "x")),
            );
            assert_eq!(
                (e.kind(), e.is_retriable()),
                (kind, retriable),
                "{condition:?}"
            );
        }
    }

    #[test]
    fn wrapped_conditions_are_found_in_the_chain() {
        let inner = described(AmqpErrorCondition::NotFound, "no hub `x`");
        let core = azure_core::Error::with_error(CoreKind::Other, inner, "ensure sender");
        let e = from_hubs("open producer", EventHubsError::from(core));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("no hub `x`"), "{e}");
    }

    #[test]
    fn management_status_codes_map() {
        let e = from_hubs(
            "hub properties",
            EventHubsError::from(AmqpError::from(AmqpErrorKind::ManagementStatusCode(
                StatusCode::NotFound,
                Some("missing".into()),
            ))),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = from_hubs(
            "hub properties",
            EventHubsError::from(AmqpError::from(AmqpErrorKind::ManagementStatusCode(
                StatusCode::ServiceUnavailable,
                None,
            ))),
        );
        assert!(e.kind() == ErrorKind::Unavailable && e.is_retriable());
    }

    #[test]
    fn credential_errors_are_auth() {
        let e = from_core(
            "token",
            azure_core::Error::with_message(CoreKind::Credential, "no az login"),
        );
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_retriable());
    }
}
