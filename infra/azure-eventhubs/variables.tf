variable "location" {
  description = "Azure region for every resource, e.g. westeurope."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, e.g. westeurope."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; a random suffix keeps global names unique. Lower-case letters and digits, 3 to 10 characters (the storage account name allows 24 in all)."
  type        = string
  default     = "evhubtest"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,9}$", var.name_prefix))
    error_message = "name_prefix must be 3-10 lower-case letters or digits, starting with a letter."
  }
}

variable "throughput_units" {
  description = "Throughput units (capacity) of the Standard namespace; each unit is billed per hour."
  type        = number
  default     = 1

  validation {
    condition     = var.throughput_units >= 1 && var.throughput_units <= 20 && floor(var.throughput_units) == var.throughput_units
    error_message = "throughput_units must be a whole number from 1 to 20."
  }
}

variable "local_authentication_enabled" {
  description = "Allow SAS (connection string) authentication on the namespace. The SAS-based live tests need it; set false to test Azure AD auth only (then also set assign_aad_roles)."
  type        = bool
  default     = true
}

variable "event_hubs" {
  description = "Event hubs created for the suite: name => partition count and message retention in days (1-7 on Standard)."
  type = map(object({
    partition_count        = number
    message_retention_days = number
  }))
  default = {
    "evhub-conformance"   = { partition_count = 4, message_retention_days = 1 }
    "evhub-conformance-2" = { partition_count = 2, message_retention_days = 1 }
  }

  validation {
    condition     = length(var.event_hubs) >= 1 && length(var.event_hubs) <= 10
    error_message = "event_hubs must name 1 to 10 hubs (a Standard namespace allows 10)."
  }

  validation {
    condition = alltrue([
      for name, hub in var.event_hubs :
      can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$", name)) &&
      hub.partition_count >= 1 && hub.partition_count <= 32 && floor(hub.partition_count) == hub.partition_count &&
      hub.message_retention_days >= 1 && hub.message_retention_days <= 7 && floor(hub.message_retention_days) == hub.message_retention_days
    ])
    error_message = "Each event hub needs a valid name, a whole partition_count from 1 to 32 and a whole message_retention_days from 1 to 7."
  }
}

variable "default_event_hub" {
  description = "The hub the suite uses by default; the send-only and listen-only rules are scoped to it. Must be a key of event_hubs."
  type        = string
  default     = "evhub-conformance"

  validation {
    condition     = contains(keys(var.event_hubs), var.default_event_hub)
    error_message = "default_event_hub must be one of the names in event_hubs."
  }
}

variable "consumer_groups" {
  description = "Consumer groups created on every suite hub (besides $Default); the first is the suite's default. A Standard hub allows 20."
  type        = list(string)
  default     = ["evhub-conformance-a", "evhub-conformance-b", "evhub-conformance-c"]

  validation {
    condition     = length(var.consumer_groups) >= 1 && length(var.consumer_groups) <= 19 && length(distinct(var.consumer_groups)) == length(var.consumer_groups)
    error_message = "consumer_groups must hold 1 to 19 distinct names."
  }

  validation {
    condition     = alltrue([for group in var.consumer_groups : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$", group))])
    error_message = "Each consumer group name must be 1-50 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "assign_aad_roles" {
  description = "Grant the principal running Terraform the Azure Event Hubs Data Sender/Receiver and Storage Blob Data Contributor roles, so Azure AD auth can be tested. Needs Owner or User Access Administrator on the subscription."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource, next to the fixed purpose/managed-by tags."
  type        = map(string)
  default     = {}
}
