# An optional managed Kafka target for the live suite: a Confluent Cloud Basic cluster in
# its own environment, reached over SASL_SSL with PLAIN and a cluster API key.
# scripts/live-test.sh kafka applies it, runs the live tests, and destroys it.

resource "random_string" "suffix" {
  length  = 6
  upper   = false
  lower   = true
  numeric = true
  special = false
}

locals {
  base_name = "${var.name_prefix}-${random_string.suffix.result}"

  # The test key may do what the suite does on its own names (resource_prefix) and nothing more.
  test_acls = {
    cluster_describe         = { type = "CLUSTER", name = "kafka-cluster", pattern = "LITERAL", operation = "DESCRIBE" }
    cluster_idempotent_write = { type = "CLUSTER", name = "kafka-cluster", pattern = "LITERAL", operation = "IDEMPOTENT_WRITE" }
    topic_read               = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "READ" }
    topic_write              = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "WRITE" }
    topic_create             = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "CREATE" }
    topic_delete             = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "DELETE" }
    topic_describe           = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "DESCRIBE" }
    topic_describe_configs   = { type = "TOPIC", name = var.resource_prefix, pattern = "PREFIXED", operation = "DESCRIBE_CONFIGS" }
    group_read               = { type = "GROUP", name = var.resource_prefix, pattern = "PREFIXED", operation = "READ" }
    group_describe           = { type = "GROUP", name = var.resource_prefix, pattern = "PREFIXED", operation = "DESCRIBE" }
    group_delete             = { type = "GROUP", name = var.resource_prefix, pattern = "PREFIXED", operation = "DELETE" }
    transactional_write      = { type = "TRANSACTIONAL_ID", name = var.resource_prefix, pattern = "PREFIXED", operation = "WRITE" }
    transactional_describe   = { type = "TRANSACTIONAL_ID", name = var.resource_prefix, pattern = "PREFIXED", operation = "DESCRIBE" }
  }
}

resource "confluent_environment" "suite" {
  display_name = local.base_name
}

resource "confluent_kafka_cluster" "suite" {
  display_name = local.base_name
  availability = "SINGLE_ZONE"
  cloud        = var.cloud
  region       = var.region
  basic {}

  environment {
    id = confluent_environment.suite.id
  }
}

# The admin account only creates the suite's topics and ACLs; its key never leaves Terraform.
resource "confluent_service_account" "admin" {
  display_name = "${local.base_name}-admin"
  description  = "Creates topics and ACLs of the evhub live-test cluster"
}

resource "confluent_role_binding" "admin_cluster_admin" {
  principal   = "User:${confluent_service_account.admin.id}"
  role_name   = "CloudClusterAdmin"
  crn_pattern = confluent_kafka_cluster.suite.rbac_crn
}

resource "confluent_api_key" "admin" {
  display_name = "${local.base_name}-admin"
  description  = "Cluster API key of the admin account (Terraform only)"

  owner {
    id          = confluent_service_account.admin.id
    api_version = confluent_service_account.admin.api_version
    kind        = confluent_service_account.admin.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.suite.id
    api_version = confluent_kafka_cluster.suite.api_version
    kind        = confluent_kafka_cluster.suite.kind

    environment {
      id = confluent_environment.suite.id
    }
  }

  # The key must not be used to create topics before its owner is cluster admin.
  depends_on = [confluent_role_binding.admin_cluster_admin]
}

resource "confluent_kafka_topic" "suite" {
  for_each = var.topics

  kafka_cluster {
    id = confluent_kafka_cluster.suite.id
  }
  topic_name       = each.key
  partitions_count = each.value.partitions
  rest_endpoint    = confluent_kafka_cluster.suite.rest_endpoint
  config = {
    "cleanup.policy" = "delete"
    "retention.ms"   = tostring(each.value.retention_hours * 3600000)
  }

  credentials {
    key    = confluent_api_key.admin.id
    secret = confluent_api_key.admin.secret
  }
}

# The account the live tests authenticate as (SASL PLAIN with its cluster API key).
resource "confluent_service_account" "test" {
  display_name = "${local.base_name}-test"
  description  = "evhub live conformance tests: produce, consume and manage suite-prefixed topics"
}

resource "confluent_api_key" "test" {
  display_name = "${local.base_name}-test"
  description  = "Cluster API key the evhub live tests use as SASL username/password"

  owner {
    id          = confluent_service_account.test.id
    api_version = confluent_service_account.test.api_version
    kind        = confluent_service_account.test.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.suite.id
    api_version = confluent_kafka_cluster.suite.api_version
    kind        = confluent_kafka_cluster.suite.kind

    environment {
      id = confluent_environment.suite.id
    }
  }
}

resource "confluent_kafka_acl" "test" {
  for_each = local.test_acls

  kafka_cluster {
    id = confluent_kafka_cluster.suite.id
  }
  resource_type = each.value.type
  resource_name = each.value.name
  pattern_type  = each.value.pattern
  principal     = "User:${confluent_service_account.test.id}"
  host          = "*"
  operation     = each.value.operation
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.suite.rest_endpoint

  credentials {
    key    = confluent_api_key.admin.id
    secret = confluent_api_key.admin.secret
  }
}
