variable "name" {
  description = "Deployment name: the bus, the table, the prefix of queues, roles, services and log groups."
  type        = string
  default     = "agentbus"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "The name must be 2-21 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the deployment."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "The region must look like us-east-1."
  }
}

variable "vpc_id" {
  description = "VPC of the services and the cache."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more availability zones) with a route to the AWS APIs (NAT gateway or VPC endpoints) for the services and the cache."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least two subnet IDs (subnet-...)."
  }
}

variable "image" {
  description = "The agentbus image built from the repository's Dockerfile and pushed to a registry the tasks can pull from (e.g. <account>.dkr.ecr.<region>.amazonaws.com/agentbus:<tag>)."
  type        = string

  validation {
    condition     = length(var.image) > 0 && !endswith(var.image, ":latest")
    error_message = "Give an image with a fixed tag or digest, not :latest."
  }
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository of the image, so the execution roles may pull it; null for a public image."
  type        = string
  default     = null
}

variable "bedrock_model_id" {
  description = "Bedrock model id or cross-region inference profile id the planner calls with Converse (e.g. us.anthropic.claude-sonnet-4-20250514-v1:0). The planner's role may invoke only this model."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]+(\\.[A-Za-z0-9-]+)+(:[0-9]+)?$", var.bedrock_model_id))
    error_message = "The bedrock_model_id must look like anthropic.claude-... or us.anthropic.claude-..."
  }
}

variable "extra_publisher_arns" {
  description = "IAM role or user ARNs, besides the services, allowed to publish on the bus (the clients that start runs with `agentbus run`)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.extra_publisher_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "Every extra publisher must be an IAM role or user ARN."
  }
}

variable "min_capacity" {
  description = "Fewest tasks per service. 0 lets a service scale to zero when its queue is idle; the memory service answers context reads and so keeps one task."
  type        = map(number)
  default = {
    planner     = 0
    executor    = 0
    memory      = 1
    toolgateway = 0
  }

  validation {
    condition     = alltrue([for k, v in var.min_capacity : contains(["planner", "executor", "memory", "toolgateway"], k) && v >= 0])
    error_message = "The keys must be service names (planner, executor, memory, toolgateway) and the values >= 0."
  }
}

variable "max_capacity" {
  description = "Most tasks per service."
  type        = number
  default     = 4

  validation {
    condition     = var.max_capacity >= 1
    error_message = "The max_capacity must be >= 1."
  }
}

variable "max_event_size" {
  description = "Largest event published inline (bytes); larger ones are claim-checked into the blob bucket."
  type        = number
  default     = 262144

  validation {
    condition     = var.max_event_size >= 1024 && var.max_event_size <= 1048576
    error_message = "The max_event_size must be 1024..1048576."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the bus, table, bucket, cache, secret and log groups; null uses AWS managed keys. Its key policy must admit the services' task roles (output task_role_arns)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the state table from deletion; set false for a throw-away deployment."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource (provider default_tags)."
  type        = map(string)
  default     = { Project = "agentbus" }
}

variable "saga_definitions_dir" {
  description = "Folder inside the image that holds the saga definition files (the examples/sagas/*.json the state machines were generated from; the stock image has them in /etc/agentbus/sagas). When set, the tool-gateway runs the sagas (AGENTBUS_SAGA_* settings) and the rule toolgateway-sagas routes their calls to it; null deploys the state machines without offering them."
  type        = string
  default     = null

  validation {
    condition     = var.saga_definitions_dir == null || can(regex("^/", var.saga_definitions_dir))
    error_message = "The saga_definitions_dir must be an absolute path inside the image."
  }
}
