# PLACEHOLDER: the saga module declares only the inputs the saga issue (7) is
# expected to need; it creates no resources yet. The Step Functions state
# machine, its role (with the CloudWatch Logs delivery actions that Step
# Functions logging requires on "*", allow-listed in deploy's IAM check) and
# the rules that start it land with that issue.

variable "name" {
  description = "Name of the saga (its state machine will be \"<name_prefix>-saga-<name>\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "The name must match ^[a-z][a-z0-9-]{0,39}$."
  }
}

variable "name_prefix" {
  description = "Prefix of the resource names (usually the deployment name)."
  type        = string
  default     = "agentbus"
}

variable "definition_file" {
  description = "Path of the Amazon States Language definition of the saga."
  type        = string
}

variable "bus_arn" {
  description = "ARN of the event bus the saga publishes SagaStarted/SagaCompleted/SagaCompensated/SagaCompensationFailed to."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the state machine's execution log group."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
