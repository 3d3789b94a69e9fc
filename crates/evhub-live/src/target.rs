//! The backends a live run can target and the infrastructure stack behind each.

use std::fmt;
use std::str::FromStr;

/// A backend the live conformance tests run against.
///
/// `Display` and [`FromStr`] use the backend id (`eventhubs`, `eventhubs-kafka`, `kafka`),
/// the same ids the `required_by` column of `infra/live-env.tsv` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Azure Event Hubs over AMQP (backend `eventhubs`).
    EventHubs,
    /// Azure Event Hubs through its Kafka endpoint (backend `eventhubs-kafka`).
    EventHubsKafka,
    /// A managed Apache Kafka cluster with SASL_SSL (backend `kafka`).
    Kafka,
}

impl Target {
    /// Every target, in a stable order.
    pub const ALL: [Target; 3] = [Target::EventHubs, Target::EventHubsKafka, Target::Kafka];

    /// The evhub backend id of this target.
    pub fn backend_id(self) -> &'static str {
        match self {
            Target::EventHubs => "eventhubs",
            Target::EventHubsKafka => "eventhubs-kafka",
            Target::Kafka => "kafka",
        }
    }

    /// The `scripts/live-test.sh` argument that provisions this target.
    pub fn stack(self) -> &'static str {
        match self {
            Target::EventHubs | Target::EventHubsKafka => "azure",
            Target::Kafka => "kafka",
        }
    }

    /// The Terraform module under `infra/` whose outputs configure this target.
    pub fn module(self) -> &'static str {
        match self {
            Target::EventHubs | Target::EventHubsKafka => "azure-eventhubs",
            Target::Kafka => "kafka",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend_id())
    }
}

/// A string that is not the backend id of any [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget(pub String);

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown live target '{}' (expected eventhubs, eventhubs-kafka or kafka)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTarget {}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|target| target.backend_id() == s)
            .ok_or_else(|| UnknownTarget(s.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backend_ids_round_trip_and_unknown_ids_are_rejected() {
        for target in Target::ALL {
            assert_eq!(target.backend_id().parse::<Target>(), Ok(target));
            assert_eq!(target.to_string(), target.backend_id());
        }
        let err = "event-hubs".parse::<Target>().unwrap_err();
        assert!(err.to_string().contains("'event-hubs'"), "{err}");
    }

    #[test]
    fn both_event_hubs_targets_come_from_the_azure_stack() {
        assert_eq!(Target::EventHubs.stack(), "azure");
        assert_eq!(Target::EventHubsKafka.module(), "azure-eventhubs");
        assert_eq!(Target::Kafka.stack(), "kafka");
        assert_eq!(Target::Kafka.module(), "kafka");
    }
}
