terraform {
  # 1.9 is the first release whose variable validations may refer to other variables.
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Only arguments that are current in 4.x and kept in 5.x are used (eventhub
      # namespace_id, storage container storage_account_id): `terraform validate` and
      # `terraform test` pass with azurerm 4.81.0 and 5.2.0. On 5.x also set the provider's
      # resource_provider_registrations (5.x no longer registers Microsoft.EventHub itself).
      version = "~> 4.40"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "azurerm" {
  # The subscription comes from ARM_SUBSCRIPTION_ID; scripts/live-test.sh sets it from
  # `az account show` when it is unset.
  features {
    resource_group {
      # A throwaway test group: destroy must succeed even if a test left something in it.
      prevent_deletion_if_contains_resources = false
    }
  }
}
