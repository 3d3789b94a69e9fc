//! Mapping of librdkafka errors to [`evhub_core::ErrorKind`].

use evhub_core::{Error, ErrorKind};
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

/// The evhub kind of a librdkafka / Kafka protocol error code.
pub fn kind_of_code(code: Code) -> ErrorKind {
    match code {
        Code::SaslAuthenticationFailed
        | Code::Authentication
        | Code::TopicAuthorizationFailed
        | Code::GroupAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::DelegationTokenAuthorizationFailed
        | Code::IllegalSASLState
        | Code::UnacceptableCredential
        | Code::SSL => ErrorKind::Auth,

        Code::UnknownTopicOrPartition
        | Code::UnknownTopic
        | Code::UnknownPartition
        | Code::UnknownTopicId
        | Code::GroupIdNotFound
        | Code::UnknownGroup
        | Code::ResourceNotFound
        | Code::NoEnt => ErrorKind::NotFound,

        Code::MessageSizeTooLarge | Code::MessageBatchTooLarge => ErrorKind::TooLarge,

        Code::AllBrokersDown
        | Code::BrokerTransportFailure
        | Code::Resolve
        | Code::LeaderNotAvailable
        | Code::NotLeaderForPartition
        | Code::BrokerNotAvailable
        | Code::ReplicaNotAvailable
        | Code::NetworkException
        | Code::CoordinatorLoadInProgress
        | Code::CoordinatorNotAvailable
        | Code::NotCoordinator
        | Code::WaitingForCoordinator
        | Code::NotEnoughReplicas
        | Code::NotEnoughReplicasAfterAppend
        | Code::ISRInsufficient
        | Code::KafkaStorageError
        | Code::ThrottlingQuotaExceeded
        | Code::QueueFull
        | Code::NotController
        | Code::FencedLeaderEpoch
        | Code::UnknownLeaderEpoch
        | Code::OffsetNotAvailable
        | Code::PreferredLeaderNotAvailable
        | Code::RebootstrapRequired
        | Code::Retry => ErrorKind::Unavailable,

        Code::MessageTimedOut
        | Code::OperationTimedOut
        | Code::RequestTimedOut
        | Code::TimedOutQueue => ErrorKind::Timeout,

        Code::IllegalGeneration
        | Code::UnknownMemberId
        | Code::RebalanceInProgress
        | Code::FencedInstanceId
        | Code::AssignmentLost
        | Code::StaleMemberEpoch
        | Code::FencedMemberEpoch
        | Code::ProducerFenced
        | Code::Fenced
        | Code::TopicAlreadyExists
        | Code::Conflict
        | Code::NonEmptyGroup => ErrorKind::Conflict,

        Code::InvalidTopic
        | Code::InvalidPartitions
        | Code::InvalidReplicationFactor
        | Code::InvalidReplicaAssignment
        | Code::InvalidTimestamp
        | Code::InvalidRecord
        | Code::InvalidGroupId
        | Code::InvalidCommitOffsetSize
        | Code::OffsetOutOfRange
        | Code::OffsetMetadataTooLarge
        | Code::InvalidArgument => ErrorKind::InvalidInput,

        Code::InvalidConfig | Code::InvalidSessionTimeout | Code::UnsupportedSASLMechanism => {
            ErrorKind::Config
        }

        Code::UnsupportedVersion
        | Code::UnsupportedFeature
        | Code::NotImplemented
        | Code::SecurityDisabled
        | Code::UnsupportedForMessageFormat
        | Code::UnsupportedCompressionType
        | Code::TopicDeletionDisabled
        | Code::PolicyViolation
        | Code::DelegationTokenAuthDisabled
        | Code::UnsupportedAssignor => ErrorKind::Unsupported,

        Code::BrokerDestroy | Code::DestroyBroker => ErrorKind::Closed,

        Code::BadMessage
        | Code::BadCompression
        | Code::InvalidMessage
        | Code::InvalidMessageSize
        | Code::UnknownProtocol
        | Code::InvalidRequest
        | Code::OutOfOrderSequenceNumber
        | Code::InconsistentGroupProtocol
        | Code::Inconsistent => ErrorKind::Protocol,

        _ => ErrorKind::Other,
    }
}

/// Whether librdkafka / the protocol marks the code as transient, beyond what the kind says.
fn code_retriable(code: Code, kind: ErrorKind) -> bool {
    match code {
        // Conflicts during a rebalance clear up once the group settled.
        Code::RebalanceInProgress | Code::NotCoordinator | Code::CoordinatorLoadInProgress => true,
        // Auth failures on TLS are certificate problems: retrying will not help.
        Code::SSL => false,
        _ => kind.default_retriable(),
    }
}

/// The librdkafka error code inside a [`KafkaError`], where there is one.
pub fn code_of(err: &KafkaError) -> Option<Code> {
    match err {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// Maps a [`KafkaError`] to an evhub [`Error`]; `context` says what was being done. The
/// message holds no configuration values, so no secret can leak through it.
pub fn map_kafka_error(context: &str, err: KafkaError) -> Error {
    let (kind, retriable) = match &err {
        KafkaError::ClientConfig(..) => (ErrorKind::Config, false),
        KafkaError::Canceled => (ErrorKind::Closed, false),
        KafkaError::NoMessageReceived => (ErrorKind::Timeout, true),
        KafkaError::Nul(_) => (ErrorKind::InvalidInput, false),
        KafkaError::Transaction(e) => {
            let kind = kind_of_code(e.code());
            (kind, e.is_retriable())
        }
        other => match code_of(other) {
            Some(code) => {
                let kind = kind_of_code(code);
                (kind, code_retriable(code, kind))
            }
            None => (ErrorKind::Other, false),
        },
    };
    let (message, source) = match &err {
        // Name the key, never the value: the value may be a password. rdkafka's own Display
        // of this error prints the value, so it is not kept as the source either.
        KafkaError::ClientConfig(_, description, key, value) => {
            // librdkafka quotes the rejected value in its description: cut it out.
            let description = if value.is_empty() {
                redact(description)
            } else {
                redact(&description.replace(value.as_str(), "***"))
            };
            (
                format!("{context}: invalid librdkafka property `{key}`: {description}"),
                description,
            )
        }
        other => {
            let text = redact(&other.to_string());
            (format!("{context}: {text}"), text)
        }
    };
    Error::new(kind, message)
        .with_retriable(retriable)
        .with_source(SourceText(source))
}

/// The error text of a librdkafka error with anything secret-looking removed, kept as `source`.
#[derive(Debug)]
struct SourceText(String);

impl std::fmt::Display for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceText {}

/// Removes connection-string secrets and JWT-looking tokens from librdkafka messages.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    const MARKERS: [&str; 3] = ["SharedAccessKey=", "SharedAccessSignature=", "sig="];
    while let Some((pos, marker)) = MARKERS
        .iter()
        .filter_map(|m| rest.find(m).map(|p| (p, *m)))
        .min_by_key(|(p, _)| *p)
    {
        out.push_str(&rest[..pos + marker.len()]);
        out.push_str("***");
        let after = &rest[pos + marker.len()..];
        let end = after
            .find(|c: char| c == ';' || c == '&' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn codes_map_to_kinds_with_retriable_flags() {
        let cases = [
            (Code::SaslAuthenticationFailed, ErrorKind::Auth, false),
            (Code::Authentication, ErrorKind::Auth, false),
            (Code::SSL, ErrorKind::Auth, false),
            (Code::UnknownTopicOrPartition, ErrorKind::NotFound, false),
            (Code::MessageSizeTooLarge, ErrorKind::TooLarge, false),
            (Code::AllBrokersDown, ErrorKind::Unavailable, true),
            (Code::NotLeaderForPartition, ErrorKind::Unavailable, true),
            (Code::MessageTimedOut, ErrorKind::Timeout, true),
            (Code::IllegalGeneration, ErrorKind::Conflict, false),
            (Code::RebalanceInProgress, ErrorKind::Conflict, true),
            (Code::UnknownMemberId, ErrorKind::Conflict, false),
            (Code::InvalidPartitions, ErrorKind::InvalidInput, false),
            (Code::UnsupportedVersion, ErrorKind::Unsupported, false),
            (Code::InvalidMessage, ErrorKind::Protocol, false),
        ];
        for (code, kind, retriable) in cases {
            let e = map_kafka_error("op", KafkaError::MessageProduction(code));
            assert_eq!(e.kind(), kind, "{code:?}");
            assert_eq!(e.is_retriable(), retriable, "{code:?}");
        }
    }

    #[test]
    fn config_error_names_key_but_not_value() {
        let e = map_kafka_error(
            "creating client",
            KafkaError::ClientConfig(
                RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                "Invalid value \"hunter2-secret\" for configuration property \"sasl.password\""
                    .into(),
                "sasl.password".into(),
                "hunter2-secret".into(),
            ),
        );
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("`sasl.password`"), "{e}");
        let all = format!(
            "{e} {e:?} {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(!all.contains("hunter2"), "{all}");
    }

    #[test]
    fn canceled_is_closed_and_admin_codes_are_mapped() {
        assert_eq!(
            map_kafka_error("x", KafkaError::Canceled).kind(),
            ErrorKind::Closed
        );
        assert_eq!(
            map_kafka_error("x", KafkaError::AdminOp(Code::TopicAlreadyExists)).kind(),
            ErrorKind::Conflict
        );
    }

    #[test]
    fn redact_hides_keys_and_signatures() {
        let s = "failed for Endpoint=sb://x/;SharedAccessKeyName=Root;SharedAccessKey=abc+/= ok sig=zzz&se=1";
        let r = redact(s);
        assert!(!r.contains("abc+/="), "{r}");
        assert!(!r.contains("zzz"), "{r}");
        assert!(r.contains("SharedAccessKeyName=Root"));
        assert!(r.ends_with("&se=1"));
    }
}
