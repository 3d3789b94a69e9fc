# Every output is a string, number or bool so scripts/live-test.sh can read it with
# `terraform output -raw`; infra/live-env.tsv maps each one to its EVHUB_LIVE_* variable.
# Output names shared with infra/kafka (hub_*, kafka_*) mean the same thing there.

output "resource_group_name" {
  description = "Resource group holding everything this module created."
  value       = azurerm_resource_group.suite.name
}

output "namespace_fqdn" {
  description = "Fully qualified host of the Event Hubs namespace."
  value       = "${azurerm_eventhub_namespace.suite.name}.servicebus.windows.net"
}

output "hub_name" {
  description = "Event hub the suite uses by default."
  value       = azurerm_eventhub.suite[var.default_event_hub].name
}

output "hub_names" {
  description = "Comma-separated names of all event hubs created for the suite."
  value       = join(",", sort([for hub in azurerm_eventhub.suite : hub.name]))
}

output "hub_partition_count" {
  description = "Partition count of the default event hub."
  value       = azurerm_eventhub.suite[var.default_event_hub].partition_count
}

output "consumer_group" {
  description = "Consumer group the suite uses by default; it exists on every suite hub."
  value       = var.consumer_groups[0]
}

output "consumer_groups" {
  description = "Comma-separated consumer groups that exist on every suite hub."
  value       = join(",", var.consumer_groups)
}

output "manage_connection_string" {
  description = "Namespace-level connection string with Manage, Send and Listen rights."
  value       = azurerm_eventhub_namespace_authorization_rule.manage.primary_connection_string
  sensitive   = true
}

output "send_connection_string" {
  description = "Send-only connection string scoped to the default hub (includes EntityPath)."
  value       = azurerm_eventhub_authorization_rule.send.primary_connection_string
  sensitive   = true
}

output "listen_connection_string" {
  description = "Listen-only connection string scoped to the default hub (includes EntityPath)."
  value       = azurerm_eventhub_authorization_rule.listen.primary_connection_string
  sensitive   = true
}

output "kafka_bootstrap_servers" {
  description = "Kafka endpoint of the namespace (SASL_SSL)."
  value       = "${azurerm_eventhub_namespace.suite.name}.servicebus.windows.net:9093"
}

output "kafka_sasl_username" {
  description = "SASL PLAIN username for the Kafka endpoint when authenticating with a connection string."
  value       = "$ConnectionString"
}

output "kafka_sasl_password" {
  description = "SASL PLAIN password for the Kafka endpoint: the namespace manage connection string."
  value       = azurerm_eventhub_namespace_authorization_rule.manage.primary_connection_string
  sensitive   = true
}

output "aad_roles_assigned" {
  description = "Whether the principal running Terraform got the Event Hubs data and blob data roles."
  value       = var.assign_aad_roles
}

output "checkpoint_storage_account" {
  description = "Name of the storage account holding blob checkpoints."
  value       = azurerm_storage_account.checkpoints.name
}

output "checkpoint_blob_endpoint" {
  description = "Blob service endpoint of the checkpoint storage account."
  value       = azurerm_storage_account.checkpoints.primary_blob_endpoint
}

output "checkpoint_container" {
  description = "Private container for checkpoints and partition ownership."
  value       = azurerm_storage_container.checkpoints.name
}

output "checkpoint_connection_string" {
  description = "Blob connection string (account key) of the checkpoint storage account."
  value       = azurerm_storage_account.checkpoints.primary_blob_connection_string
  sensitive   = true
}
