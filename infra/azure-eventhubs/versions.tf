terraform {
  # 1.9 is the first release whose variable validations may refer to other variables.
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Only arguments that are current in 4.x and kept in 5.x are used (eventhub
      # namespace_id, storage container storage_account_id), so moving to 5.x is a
      # change of this line only.
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
