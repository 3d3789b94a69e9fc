# A throwaway Event Hubs environment for the evhub live conformance suite:
# scripts/live-test.sh azure applies it, runs the live tests, and destroys it.

data "azurerm_client_config" "current" {}

resource "random_string" "suffix" {
  length  = 8
  upper   = false
  lower   = true
  numeric = true
  special = false
}

locals {
  # Event Hubs namespace and storage account names are global DNS labels.
  base_name = "${var.name_prefix}${random_string.suffix.result}"

  tags = merge(var.tags, {
    purpose    = "evhub-live-tests"
    managed-by = "terraform"
    ephemeral  = "true"
  })

  # Every (hub, consumer group) pair, keyed "hub/group".
  hub_consumer_groups = {
    for pair in setproduct(keys(var.event_hubs), var.consumer_groups) :
    "${pair[0]}/${pair[1]}" => { hub = pair[0], group = pair[1] }
  }

  aad_roles = var.assign_aad_roles ? {
    eventhubs_sender   = { scope = azurerm_eventhub_namespace.suite.id, role = "Azure Event Hubs Data Sender" }
    eventhubs_receiver = { scope = azurerm_eventhub_namespace.suite.id, role = "Azure Event Hubs Data Receiver" }
    checkpoint_blobs   = { scope = azurerm_storage_container.checkpoints.id, role = "Storage Blob Data Contributor" }
  } : {}
}

resource "azurerm_resource_group" "suite" {
  name     = "rg-${local.base_name}"
  location = var.location
  tags     = local.tags
}

# Standard tier: the Kafka endpoint (port 9093) is always on for Standard and above.
resource "azurerm_eventhub_namespace" "suite" {
  name                          = "evhns-${local.base_name}"
  location                      = azurerm_resource_group.suite.location
  resource_group_name           = azurerm_resource_group.suite.name
  sku                           = "Standard"
  capacity                      = var.throughput_units
  auto_inflate_enabled          = false
  minimum_tls_version           = "1.2"
  local_authentication_enabled  = var.local_authentication_enabled
  public_network_access_enabled = true
  tags                          = local.tags
}

resource "azurerm_eventhub" "suite" {
  for_each = var.event_hubs

  name              = each.key
  namespace_id      = azurerm_eventhub_namespace.suite.id
  partition_count   = each.value.partition_count
  message_retention = each.value.message_retention_days
}

resource "azurerm_eventhub_consumer_group" "suite" {
  for_each = local.hub_consumer_groups

  name                = each.value.group
  namespace_name      = azurerm_eventhub_namespace.suite.name
  eventhub_name       = azurerm_eventhub.suite[each.value.hub].name
  resource_group_name = azurerm_resource_group.suite.name
}

# Least privilege: producers get a send-only key, consumers a listen-only key, both scoped to
# the default hub. The manage key exists for tests that read hub metadata or use other hubs.
resource "azurerm_eventhub_authorization_rule" "send" {
  name                = "evhub-send"
  namespace_name      = azurerm_eventhub_namespace.suite.name
  eventhub_name       = azurerm_eventhub.suite[var.default_event_hub].name
  resource_group_name = azurerm_resource_group.suite.name
  send                = true
  listen              = false
  manage              = false
}

resource "azurerm_eventhub_authorization_rule" "listen" {
  name                = "evhub-listen"
  namespace_name      = azurerm_eventhub_namespace.suite.name
  eventhub_name       = azurerm_eventhub.suite[var.default_event_hub].name
  resource_group_name = azurerm_resource_group.suite.name
  send                = false
  listen              = true
  manage              = false
}

resource "azurerm_eventhub_namespace_authorization_rule" "manage" {
  name                = "evhub-manage"
  namespace_name      = azurerm_eventhub_namespace.suite.name
  resource_group_name = azurerm_resource_group.suite.name
  send                = true
  listen              = true
  manage              = true
}

# Blob checkpoints and partition ownership for the `eventhubs` backend.
resource "azurerm_storage_account" "checkpoints" {
  #checkov:skip=CKV_AZURE_206:Locally redundant storage is enough for checkpoints that are deleted after one test run.
  #checkov:skip=CKV_AZURE_33:The account serves blobs only; the queue service is never used, so there is nothing to log.
  #checkov:skip=CKV_AZURE_35:The suite reaches the account from the runner's changing public IP; the data is throwaway test checkpoints.
  #checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: the runner connects over the public endpoint.
  #checkov:skip=CKV2_AZURE_33:A private endpoint would need a VNet the test runner is in.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys are out of scope for throwaway test checkpoints; Microsoft-managed encryption applies.
  #checkov:skip=CKV2_AZURE_40:The checkpoint store tests use the connection string (shared key) path; Azure AD is covered by assign_aad_roles.
  name                              = local.base_name
  resource_group_name               = azurerm_resource_group.suite.name
  location                          = azurerm_resource_group.suite.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "LRS"
  access_tier                       = "Hot"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  allow_nested_items_to_be_public   = false
  public_network_access_enabled     = true
  shared_access_key_enabled         = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  default_to_oauth_authentication   = true
  infrastructure_encryption_enabled = true
  tags                              = local.tags

  blob_properties {
    delete_retention_policy {
      days = 1
    }
    container_delete_retention_policy {
      days = 1
    }
  }

  sas_policy {
    expiration_period = "00.04:00:00"
    expiration_action = "Log"
  }
}

resource "azurerm_storage_container" "checkpoints" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging needs a Log Analytics workspace and diagnostic setting; not worth their cost for checkpoints deleted after one run.
  name                  = "evhub-checkpoints"
  storage_account_id    = azurerm_storage_account.checkpoints.id
  container_access_type = "private"
}

# Optional Azure AD roles for the principal running Terraform (user, service principal or
# managed identity), so the AAD credential paths of both Event Hubs backends can be tested.
resource "azurerm_role_assignment" "current_principal" {
  for_each = local.aad_roles

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = data.azurerm_client_config.current.object_id
}
