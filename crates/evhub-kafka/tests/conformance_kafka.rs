//! The conformance suite against `kafka` on a real Apache Kafka broker (PLAINTEXT listener).
mod common;

evhub_conformance::conformance_tests!(common::KafkaHarness(common::Broker::from_env()));
