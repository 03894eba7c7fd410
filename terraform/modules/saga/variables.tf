variable "name" {
  description = "Name of the saga (its definition's name, which is also the tool name). The state machine is \"<name_prefix>-saga-<name>\", the name the agentbus Step Functions runner looks up."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.name))
    error_message = "The name must be a saga (tool) name: 1-64 characters of A-Z a-z 0-9 _ -."
  }
}

variable "name_prefix" {
  description = "Prefix of the resource names (usually the deployment name, the prefix the agentbus binary is configured with)."
  type        = string
  default     = "agentbus"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1-30 characters of A-Z a-z 0-9 _ -."
  }
}

variable "definition_file" {
  description = "Path of the saga's generated state machine: a Terraform template of its Amazon States Language with a $${queue_url} placeholder (written by saga.TerraformTemplate; see terraform/sagas/)."
  type        = string
}

variable "queue_url" {
  description = "URL of the saga queue every Task state sends its task to (the subscriber module's queue_url of the tool-gateway's saga queue)."
  type        = string

  validation {
    condition     = can(regex("^https://", var.queue_url))
    error_message = "The queue_url must be an SQS queue URL (https://...)."
  }
}

variable "queue_arn" {
  description = "ARN of the saga queue: the only resource the state machine's role may send to."
  type        = string

  validation {
    condition     = can(regex("^arn:[a-z-]+:sqs:", var.queue_arn))
    error_message = "The queue_arn must be an SQS queue ARN."
  }
}

variable "log_level" {
  description = "Execution log level: ALL, ERROR, FATAL or OFF."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL", "OFF"], var.log_level)
    error_message = "The log_level must be ALL, ERROR, FATAL or OFF."
  }
}

variable "log_include_execution_data" {
  description = "Log the execution data (state inputs and outputs: saga inputs and tool results, which may be personal data) with each event."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the state machine's execution log group."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key of the execution data (state machine encryption), of the log group and of the saga queue when it uses this key; null for AWS owned/managed keys. The key policy must let CloudWatch Logs (logs.<region>.amazonaws.com) use it for the log group."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
