variable "name" {
  description = "Which agentbus service this is; the container runs `agentbus serve <name>`, and the task role gets exactly the IAM actions of the adapters this service uses (iam_actions.auto.tf.json, generated from the Go code)."
  type        = string

  validation {
    condition     = contains(["planner", "executor", "memory", "toolgateway"], var.name)
    error_message = "The name must be one of planner, executor, memory, toolgateway."
  }
}

variable "name_prefix" {
  description = "Prefix of the names of the ECS service, task family, roles, log group and alarms (usually the deployment name)."
  type        = string
  default     = "agentbus"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1-30 characters of A-Z a-z 0-9 _ -."
  }
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster the service runs in."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:", var.cluster_arn))
    error_message = "The cluster_arn must be an ECS cluster ARN."
  }
}

variable "image" {
  description = "The agentbus container image (built by the repository's Dockerfile); the same image for every service."
  type        = string

  validation {
    condition     = length(var.image) > 0
    error_message = "The image must not be empty."
  }
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository the image is pulled from, to let the execution role pull it; null when the image is public."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets of the tasks (they need a route to the AWS APIs: NAT or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "Give at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups of the tasks (the one the cache admits)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "Give at least one security group."
  }
}

variable "cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 256
}

variable "memory" {
  description = "Fargate task memory (MiB)."
  type        = number
  default     = 512
}

variable "bus_name" {
  description = "Event bus name (AGENTBUS_BUS_NAME)."
  type        = string
}

variable "bus_arn" {
  description = "Event bus ARN (the resource of events:PutEvents)."
  type        = string
}

variable "queue_name" {
  description = "Name of the service's own SQS queue (the autoscaling metric's dimension)."
  type        = string
}

variable "queue_url" {
  description = "URL of the service's own SQS queue (AGENTBUS_QUEUE_URL)."
  type        = string
}

variable "queue_arn" {
  description = "ARN of the service's own SQS queue."
  type        = string
}

variable "dlq_url" {
  description = "URL of the queue's DLQ (AGENTBUS_DLQ_URL): the consumer moves poison messages there itself, with the reason."
  type        = string
}

variable "dlq_arn" {
  description = "ARN of the queue's DLQ."
  type        = string
}

variable "table_name" {
  description = "State table name (AGENTBUS_TABLE)."
  type        = string
}

variable "table_arn" {
  description = "State table ARN."
  type        = string
}

variable "bucket_name" {
  description = "Blob bucket name (AGENTBUS_BUCKET)."
  type        = string
}

variable "bucket_arn" {
  description = "Blob bucket ARN."
  type        = string
}

variable "redis_addr" {
  description = "host:port of the Redis primary endpoint (AGENTBUS_REDIS_ADDR); reached over TLS."
  type        = string
}

variable "redis_auth_secret_arn" {
  description = "Secrets Manager ARN of the Redis AUTH token; ECS injects it as AGENTBUS_REDIS_PASSWORD."
  type        = string
}

variable "bedrock_model_id" {
  description = "Bedrock model or inference profile id for the Converse calls (AGENTBUS_BEDROCK_MODEL_ID)."
  type        = string
  default     = ""
}

variable "bedrock_model_arns" {
  description = "ARNs bedrock:InvokeModel is allowed on (the foundation model, and the inference profile when one is used). Required when the service uses the Bedrock adapter (the planner)."
  type        = list(string)
  default     = []
}

variable "max_event_size" {
  description = "Largest event (bytes) published inline; larger payloads go to the blob bucket as a claim check (AGENTBUS_MAX_EVENT_SIZE). EventBridge accepts 256 KiB by default."
  type        = number
  default     = 262144

  validation {
    condition     = var.max_event_size >= 1024 && var.max_event_size <= 1048576
    error_message = "The max_event_size must be 1024..1048576."
  }
}

variable "environment" {
  description = "Extra environment variables of the container (e.g. AGENTBUS_HTTP_ALLOW_HOSTS for the tool gateway). They cannot override the contract variables."
  type        = map(string)
  default     = {}
}

variable "min_capacity" {
  description = "Fewest tasks. 0 scales the service to zero when its queue has been empty for scale_in_idle_minutes (the first message then waits about a minute for a task to start); use 1 for services that must answer at once (the memory service serves context reads)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_capacity >= 0
    error_message = "The min_capacity must be >= 0."
  }
}

variable "max_capacity" {
  description = "Most tasks."
  type        = number
  default     = 4

  validation {
    condition     = var.max_capacity >= 1
    error_message = "The max_capacity must be >= 1."
  }
}

variable "messages_per_task" {
  description = "Visible backlog one task is expected to absorb: a backlog of this many adds 2 tasks per scaling step instead of 1, ten times this adds 4."
  type        = number
  default     = 20

  validation {
    condition     = var.messages_per_task >= 1
    error_message = "The messages_per_task must be >= 1."
  }
}

variable "scale_in_idle_minutes" {
  description = "Minutes the queue must be empty (nothing visible, nothing in flight) before the service scales in to min_capacity."
  type        = number
  default     = 10

  validation {
    condition     = var.scale_in_idle_minutes >= 1 && var.scale_in_idle_minutes <= 60
    error_message = "The scale_in_idle_minutes must be 1..60."
  }
}

variable "log_retention_days" {
  description = "Retention of the service's CloudWatch log group."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key of the log group and of the Redis AUTH secret (the execution role may decrypt with it); null when AWS managed keys are used. If the table, bucket or queues use this key too, grant task_role_arn its use in the key policy: the task role holds only the adapters' declared actions."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource of the module."
  type        = map(string)
  default     = {}
}
