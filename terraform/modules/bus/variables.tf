variable "name" {
  description = "Name of the custom event bus (the agentbus bus name, AGENTBUS_BUS_NAME)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,256}$", var.name)) && var.name != "default"
    error_message = "The name must be 1-256 characters of letters, digits, . - _ and not \"default\" (the account's default bus cannot carry a policy managed here)."
  }
}

variable "publisher_principal_arns" {
  description = "IAM role or user ARNs allowed to call events:PutEvents on the bus (the services' task roles and the clients that start runs). Everyone else is denied by the bus policy, even with an identity policy that allows it."
  type        = list(string)

  validation {
    condition     = length(var.publisher_principal_arns) > 0 && alltrue([for a in var.publisher_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "Give at least one publisher, each an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)."
  }
}

variable "archive_retention_days" {
  description = "Days the archive keeps every event for replay; 0 keeps them indefinitely."
  type        = number
  default     = 7

  validation {
    condition     = var.archive_retention_days >= 0
    error_message = "The archive_retention_days must be >= 0."
  }
}

variable "log_include_detail" {
  description = "Whether bus log records carry the event itself (FULL) or only metadata (NONE). Events carry prompts and tool input: NONE by default."
  type        = string
  default     = "NONE"

  validation {
    condition     = contains(["FULL", "NONE"], var.log_include_detail)
    error_message = "The log_include_detail must be FULL or NONE."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group that receives the bus logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the bus, its archive and its log group; null uses AWS owned keys."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
