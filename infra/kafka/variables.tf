variable "cloud" {
  description = "Cloud provider that hosts the Confluent Cloud cluster: AWS, AZURE or GCP."
  type        = string
  default     = "AZURE"

  validation {
    condition     = contains(["AWS", "AZURE", "GCP"], var.cloud)
    error_message = "cloud must be AWS, AZURE or GCP."
  }
}

variable "region" {
  description = "Region of the cluster in that cloud, e.g. westeurope (AZURE), eu-west-1 (AWS), europe-west1 (GCP)."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z0-9-]+$", var.region))
    error_message = "region must be a cloud region name such as westeurope or eu-west-1."
  }
}

variable "name_prefix" {
  description = "Prefix of the environment, cluster and service account display names; a random suffix is appended."
  type        = string
  default     = "evhub-live"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,29}$", var.name_prefix))
    error_message = "name_prefix must be 3-30 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "resource_prefix" {
  description = "Prefix every suite topic, consumer group and transactional id carries; the test key's ACLs cover only names with this prefix."
  type        = string
  default     = "evhub-"

  validation {
    condition     = can(regex("^[a-z][a-z0-9._-]{1,30}$", var.resource_prefix))
    error_message = "resource_prefix must be 2-31 lower-case letters, digits, '.', '_' or '-', starting with a letter."
  }
}

variable "topics" {
  description = "Topics created for the suite: name => partition count and retention in hours. Names must start with resource_prefix."
  type = map(object({
    partitions      = number
    retention_hours = number
  }))
  default = {
    "evhub-conformance"   = { partitions = 4, retention_hours = 24 }
    "evhub-conformance-2" = { partitions = 2, retention_hours = 24 }
  }

  validation {
    condition     = length(var.topics) >= 1 && length(var.topics) <= 20
    error_message = "topics must name 1 to 20 topics."
  }

  validation {
    condition = alltrue([
      for name, topic in var.topics :
      can(regex("^[A-Za-z0-9._-]{1,249}$", name)) &&
      topic.partitions >= 1 && topic.partitions <= 100 && floor(topic.partitions) == topic.partitions &&
      topic.retention_hours >= 1 && topic.retention_hours <= 168 && floor(topic.retention_hours) == topic.retention_hours
    ])
    error_message = "Each topic needs a valid Kafka name, a whole partitions count from 1 to 100 and whole retention_hours from 1 to 168."
  }

  validation {
    condition     = alltrue([for name in keys(var.topics) : startswith(name, var.resource_prefix)])
    error_message = "Every topic name must start with resource_prefix, or the test key could not use it."
  }
}

variable "default_topic" {
  description = "The topic the suite uses by default. Must be a key of topics."
  type        = string
  default     = "evhub-conformance"

  validation {
    condition     = contains(keys(var.topics), var.default_topic)
    error_message = "default_topic must be one of the names in topics."
  }
}
