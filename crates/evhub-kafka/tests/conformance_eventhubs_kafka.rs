//! The conformance suite against `eventhubs-kafka`: the Event Hubs profile (SASL_SSL, PLAIN,
//! `$ConnectionString`) on the broker's SASL_SSL listener, with a connection string whose
//! endpoint is 127.0.0.1.
mod common;

evhub_conformance::conformance_tests!(common::EventHubsKafkaHarness(common::Broker::from_env()));
