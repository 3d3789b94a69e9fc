# Every output is a string, number or bool so scripts/live-test.sh can read it with
# `terraform output -raw`; infra/live-env.tsv maps each one to its EVHUB_LIVE_* variable.
# Output names shared with infra/azure-eventhubs (hub_*, kafka_*) mean the same thing there.

output "environment_id" {
  description = "Confluent Cloud environment holding the cluster."
  value       = confluent_environment.suite.id
}

output "cluster_id" {
  description = "Id of the Basic Kafka cluster."
  value       = confluent_kafka_cluster.suite.id
}

output "kafka_bootstrap_servers" {
  description = "Bootstrap servers as host:port (the provider reports them with a SASL_SSL:// scheme)."
  value       = trimprefix(confluent_kafka_cluster.suite.bootstrap_endpoint, "SASL_SSL://")
}

output "kafka_sasl_mechanism" {
  description = "SASL mechanism of the cluster's API keys."
  value       = "PLAIN"
}

output "kafka_sasl_username" {
  description = "SASL username: the id of the test account's cluster API key."
  value       = confluent_api_key.test.id
}

output "kafka_sasl_password" {
  description = "SASL password: the secret of the test account's cluster API key."
  value       = confluent_api_key.test.secret
  sensitive   = true
}

output "resource_prefix" {
  description = "Prefix the suite's own topics, consumer groups and transactional ids must carry."
  value       = var.resource_prefix
}

output "hub_name" {
  description = "Topic the suite uses by default."
  value       = confluent_kafka_topic.suite[var.default_topic].topic_name
}

output "hub_names" {
  description = "Comma-separated names of all topics created for the suite."
  value       = join(",", sort([for topic in confluent_kafka_topic.suite : topic.topic_name]))
}

output "hub_partition_count" {
  description = "Partition count of the default topic."
  value       = confluent_kafka_topic.suite[var.default_topic].partitions_count
}
