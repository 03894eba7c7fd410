variable "name" {
  description = "Name of the DynamoDB table that holds sessions, history, claims, fan-in and the outbox (AGENTBUS_TABLE)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{3,255}$", var.name))
    error_message = "The name must be 3-255 characters of letters, digits, . - _."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for blobs: claim-checked event payloads and history items too large for a DynamoDB item (AGENTBUS_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "The bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, . -)."
  }
}

variable "point_in_time_recovery" {
  description = "Continuous backups of the table (restore to any second of the last 35 days)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the table (set false only for throw-away deployments)."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the table and the bucket; null uses the AWS managed keys (aws/dynamodb, SSE-S3)."
  type        = string
  default     = null
}

variable "blob_expiration_days" {
  description = "Days after which blobs are deleted; 0 keeps them. Blobs are referenced from history, so expire them no sooner than sessions are kept."
  type        = number
  default     = 0

  validation {
    condition     = var.blob_expiration_days >= 0
    error_message = "The blob_expiration_days must be >= 0."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete a bucket that still holds blobs."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
