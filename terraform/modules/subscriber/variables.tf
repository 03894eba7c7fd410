variable "name" {
  description = "Short queue name of the subscribing service (planner, executor, a plug-in's name, ...). The SQS queue is named \"<name_prefix>-<name>\" and its DLQ \"<name_prefix>-<name>-dlq\", the names platform/bus/sqs uses."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "The name must match ^[a-z][a-z0-9-]{0,39}$ (the catalog's target.queue format)."
  }
}

variable "name_prefix" {
  description = "Prefix of the SQS queue names, usually the deployment name (the same prefix the agentbus binary is configured with)."
  type        = string
  default     = "agentbus"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1-30 characters of A-Z a-z 0-9 _ -."
  }
}

variable "event_bus_name" {
  description = "Name of the EventBridge bus the rules are attached to (the bus module's name output)."
  type        = string

  validation {
    condition     = length(var.event_bus_name) > 0 && !strcontains(var.event_bus_name, "/")
    error_message = "The event_bus_name must be a bus name, not an ARN."
  }
}

variable "rules" {
  description = "EventBridge rules that deliver to this queue, keyed by rule name: a description and the event pattern as a JSON string (jsonencode it). Use rule_files to read catalog rule files instead; both may be given. With neither, the queue has no queue policy and is fed by identity-based permissions (the saga queue)."
  type = map(object({
    description   = optional(string, "")
    event_pattern = string
  }))
  default = {}

  validation {
    condition     = alltrue([for k, r in var.rules : can(regex("^[A-Za-z0-9._-]{1,64}$", k)) && can(jsondecode(r.event_pattern))])
    error_message = "Every rule name must be 1-64 characters of letters, digits, . - _ and every event_pattern must be valid JSON."
  }
}

variable "rule_files" {
  description = "Paths of rule catalog files (the events/rules/*.json format, see docs/rules.md) whose target.queue is this subscriber's name."
  type        = list(string)
  default     = []
}

variable "visibility_timeout_seconds" {
  description = "How long a received message stays hidden from other consumers (the catalog's target.visibilityTimeoutSeconds)."
  type        = number
  default     = 30

  validation {
    condition     = var.visibility_timeout_seconds >= 1 && var.visibility_timeout_seconds <= 43200
    error_message = "The visibility_timeout_seconds must be 1..43200."
  }
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ (the catalog's target.maxReceiveCount)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "The max_receive_count must be 1..1000."
  }
}

variable "message_retention_seconds" {
  description = "How long the queue keeps a message that nobody deletes."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "The message_retention_seconds must be 60..1209600 (14 days)."
  }
}

variable "dlq_message_retention_seconds" {
  description = "How long the DLQ keeps a message; defaults to SQS's maximum (14 days) so there is time to inspect and redrive."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600
    error_message = "The dlq_message_retention_seconds must be 60..1209600 (14 days)."
  }
}

variable "receive_wait_time_seconds" {
  description = "Default long-polling wait of ReceiveMessage."
  type        = number
  default     = 20

  validation {
    condition     = var.receive_wait_time_seconds >= 0 && var.receive_wait_time_seconds <= 20
    error_message = "The receive_wait_time_seconds must be 0..20."
  }
}

variable "kms_master_key_id" {
  description = "KMS key for queue encryption. null uses SQS-managed server-side encryption (SSE-SQS), which EventBridge can write to without a key policy."
  type        = string
  default     = null
}

variable "retry_maximum_event_age_seconds" {
  description = "How long EventBridge keeps retrying a delivery to the queue before it sends the event to the DLQ."
  type        = number
  default     = 86400

  validation {
    condition     = var.retry_maximum_event_age_seconds >= 60 && var.retry_maximum_event_age_seconds <= 86400
    error_message = "The retry_maximum_event_age_seconds must be 60..86400."
  }
}

variable "retry_maximum_attempts" {
  description = "How many times EventBridge retries a delivery to the queue before it sends the event to the DLQ."
  type        = number
  default     = 185

  validation {
    condition     = var.retry_maximum_attempts >= 0 && var.retry_maximum_attempts <= 185
    error_message = "The retry_maximum_attempts must be 0..185."
  }
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
