terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    confluent = {
      source  = "confluentinc/confluent"
      version = "~> 2.50"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

# Authenticates with a Confluent Cloud API key from CONFLUENT_CLOUD_API_KEY and
# CONFLUENT_CLOUD_API_SECRET (scripts/live-test.sh kafka checks they are set).
provider "confluent" {}
