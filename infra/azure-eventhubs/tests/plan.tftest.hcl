# Offline unit tests for this module: `terraform init && terraform test` in infra/azure-eventhubs.
# The providers are mocked, so no Azure credentials are needed and nothing is created.

mock_provider "azurerm" {
  mock_data "azurerm_client_config" {
    defaults = {
      object_id       = "00000000-0000-0000-0000-0000000000aa"
      tenant_id       = "00000000-0000-0000-0000-0000000000bb"
      subscription_id = "00000000-0000-0000-0000-0000000000cc"
    }
  }

  mock_resource "azurerm_resource_group" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-0000000000cc/resourceGroups/rg-test"
    }
  }

  mock_resource "azurerm_eventhub_namespace" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-0000000000cc/resourceGroups/rg-test/providers/Microsoft.EventHub/namespaces/evhns-test"
    }
  }

  mock_resource "azurerm_eventhub" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-0000000000cc/resourceGroups/rg-test/providers/Microsoft.EventHub/namespaces/evhns-test/eventhubs/hub"
    }
  }

  mock_resource "azurerm_storage_account" {
    defaults = {
      id                             = "/subscriptions/00000000-0000-0000-0000-0000000000cc/resourceGroups/rg-test/providers/Microsoft.Storage/storageAccounts/evhubtest"
      primary_blob_endpoint          = "https://evhubtest.blob.core.windows.net/"
      primary_blob_connection_string = "DefaultEndpointsProtocol=https;AccountName=evhubtest;AccountKey=bW9jaw==;BlobEndpoint=https://evhubtest.blob.core.windows.net/"
    }
  }

  mock_resource "azurerm_storage_container" {
    defaults = {
      id = "/subscriptions/00000000-0000-0000-0000-0000000000cc/resourceGroups/rg-test/providers/Microsoft.Storage/storageAccounts/evhubtest/blobServices/default/containers/evhub-checkpoints"
    }
  }

  mock_resource "azurerm_eventhub_authorization_rule" {
    defaults = {
      primary_connection_string = "Endpoint=sb://evhns-test.servicebus.windows.net/;SharedAccessKeyName=rule;SharedAccessKey=bW9jaw==;EntityPath=evhub-conformance"
    }
  }

  mock_resource "azurerm_eventhub_namespace_authorization_rule" {
    defaults = {
      primary_connection_string = "Endpoint=sb://evhns-test.servicebus.windows.net/;SharedAccessKeyName=evhub-manage;SharedAccessKey=bW9jaw=="
    }
  }
}

mock_provider "random" {
  mock_resource "random_string" {
    defaults = {
      result = "abc12345"
    }
  }
}

run "defaults_create_the_suite_environment" {
  command = apply

  assert {
    condition     = azurerm_eventhub_namespace.suite.sku == "Standard" && azurerm_eventhub_namespace.suite.minimum_tls_version == "1.2"
    error_message = "The namespace must be Standard (Kafka endpoint) with TLS 1.2 minimum."
  }

  assert {
    condition     = azurerm_eventhub_namespace.suite.name == "evhns-evhubtestabc12345" && azurerm_storage_account.checkpoints.name == "evhubtestabc12345"
    error_message = "Names must be the prefix plus the random suffix."
  }

  assert {
    condition     = length(azurerm_eventhub.suite) == 2 && azurerm_eventhub.suite["evhub-conformance"].partition_count == 4
    error_message = "The default hubs and partition counts changed."
  }

  assert {
    condition     = length(azurerm_eventhub_consumer_group.suite) == 6
    error_message = "Every consumer group must exist on every hub (2 hubs x 3 groups)."
  }

  assert {
    condition     = length(azurerm_role_assignment.current_principal) == 0
    error_message = "Role assignments are opt-in."
  }

  assert {
    condition     = output.kafka_bootstrap_servers == "evhns-evhubtestabc12345.servicebus.windows.net:9093" && output.namespace_fqdn == "evhns-evhubtestabc12345.servicebus.windows.net"
    error_message = "The Kafka endpoint is <namespace>.servicebus.windows.net:9093."
  }

  assert {
    condition     = output.hub_name == "evhub-conformance" && output.hub_names == "evhub-conformance,evhub-conformance-2" && output.hub_partition_count == 4
    error_message = "Hub outputs do not match the defaults."
  }

  assert {
    condition     = output.consumer_group == "evhub-conformance-a" && output.consumer_groups == "evhub-conformance-a,evhub-conformance-b,evhub-conformance-c"
    error_message = "Consumer group outputs do not match the defaults."
  }

  assert {
    condition     = output.kafka_sasl_username == "$ConnectionString" && output.checkpoint_container == "evhub-checkpoints"
    error_message = "Fixed outputs changed."
  }
}

run "aad_roles_go_to_the_current_principal" {
  command = apply

  variables {
    assign_aad_roles = true
  }

  assert {
    condition     = length(azurerm_role_assignment.current_principal) == 3
    error_message = "Expected the sender, receiver and blob contributor roles."
  }

  assert {
    condition = alltrue([
      for assignment in azurerm_role_assignment.current_principal :
      assignment.principal_id == "00000000-0000-0000-0000-0000000000aa"
    ])
    error_message = "Roles must be granted to the principal running Terraform."
  }

  assert {
    condition     = azurerm_role_assignment.current_principal["checkpoint_blobs"].role_definition_name == "Storage Blob Data Contributor"
    error_message = "The blob role is missing."
  }

  assert {
    condition     = output.aad_roles_assigned == true
    error_message = "aad_roles_assigned must report the roles."
  }
}

run "a_default_hub_outside_event_hubs_is_rejected" {
  command = plan

  variables {
    default_event_hub = "not-a-hub"
  }

  expect_failures = [var.default_event_hub]
}

run "retention_beyond_seven_days_is_rejected" {
  command = plan

  variables {
    event_hubs = {
      "evhub-conformance" = { partition_count = 4, message_retention_days = 8 }
    }
  }

  expect_failures = [var.event_hubs]
}
