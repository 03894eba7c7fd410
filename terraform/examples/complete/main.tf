# A complete agentbus deployment: the bus, one subscriber (queue + DLQ +
# rules) per queue of the rule catalog, the state table and blob bucket, the
# Redis cache, and the four services on ECS Fargate.
#
# Routing is read from the rule catalog, events/rules/*.json, the same files
# the embedded bus loads: it is never written twice.

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  rules_dir = "${path.module}/../../../events/rules"
  catalog   = [for f in sort(fileset(local.rules_dir, "*.json")) : jsondecode(file("${local.rules_dir}/${f}"))]

  # Queue -> the catalog rules that target it. Queue settings are the same
  # for every rule of a queue (the catalog loader enforces it).
  queues = {
    for q in distinct([for r in local.catalog : r.target.queue]) : q => [for r in local.catalog : r if r.target.queue == q]
  }

  services = toset(["planner", "executor", "memory", "toolgateway"])

  # A cross-region inference profile id (us.anthropic...) is invoked through
  # the profile and then the foundation model in whichever region serves it.
  geo_prefixes       = ["us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global."]
  bedrock_is_profile = anytrue([for p in local.geo_prefixes : startswith(var.bedrock_model_id, p)])
  bedrock_base_model = local.bedrock_is_profile ? join(".", slice(split(".", var.bedrock_model_id), 1, length(split(".", var.bedrock_model_id)))) : var.bedrock_model_id
  bedrock_model_arns = local.bedrock_is_profile ? [
    "arn:${data.aws_partition.current.partition}:bedrock:${var.region}:${data.aws_caller_identity.current.account_id}:inference-profile/${var.bedrock_model_id}",
    "arn:${data.aws_partition.current.partition}:bedrock:*::foundation-model/${local.bedrock_base_model}",
  ] : ["arn:${data.aws_partition.current.partition}:bedrock:${var.region}::foundation-model/${var.bedrock_model_id}"]
}

module "bus" {
  source = "../../modules/bus"

  name                     = var.name
  publisher_principal_arns = concat([for s in module.service : s.task_role_arn], var.extra_publisher_arns)
  kms_key_arn              = var.kms_key_arn
}

module "subscriber" {
  source   = "../../modules/subscriber"
  for_each = local.queues

  name           = each.key
  name_prefix    = var.name
  event_bus_name = module.bus.name
  rules = {
    for r in each.value : r.name => {
      description   = r.description
      event_pattern = jsonencode(r.eventPattern)
    }
  }
  max_receive_count          = try(each.value[0].target.maxReceiveCount, 5)
  visibility_timeout_seconds = try(each.value[0].target.visibilityTimeoutSeconds, 30)
  kms_master_key_id          = var.kms_key_arn
}

module "state" {
  source = "../../modules/state"

  name                = "${var.name}-state"
  bucket_name         = "${var.name}-blobs-${data.aws_caller_identity.current.account_id}"
  kms_key_arn         = var.kms_key_arn
  deletion_protection = var.deletion_protection
}

resource "aws_security_group" "services" {
  name        = "${var.name}-services"
  description = "agentbus services: no inbound, outbound to AWS APIs, tools and the cache."
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "services_https" {
  security_group_id = aws_security_group.services.id
  description       = "AWS APIs and the http_get tool over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "services_redis" {
  security_group_id            = aws_security_group.services.id
  description                  = "The Redis cache"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = module.cache.security_group_id
}

module "cache" {
  source = "../../modules/cache"

  name                       = var.name
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.private_subnet_ids
  allowed_security_group_ids = [aws_security_group.services.id]
  kms_key_arn                = var.kms_key_arn
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

module "service" {
  source   = "../../modules/service"
  for_each = local.services

  name               = each.key
  name_prefix        = var.name
  cluster_arn        = aws_ecs_cluster.this.arn
  image              = var.image
  ecr_repository_arn = var.ecr_repository_arn
  subnet_ids         = var.private_subnet_ids
  security_group_ids = [aws_security_group.services.id]

  bus_name    = module.bus.name
  bus_arn     = module.bus.arn
  queue_name  = module.subscriber[each.key].queue_name
  queue_url   = module.subscriber[each.key].queue_url
  queue_arn   = module.subscriber[each.key].queue_arn
  dlq_url     = module.subscriber[each.key].dlq_url
  dlq_arn     = module.subscriber[each.key].dlq_arn
  table_name  = module.state.table_name
  table_arn   = module.state.table_arn
  bucket_name = module.state.bucket_name
  bucket_arn  = module.state.bucket_arn

  redis_addr            = module.cache.address
  redis_auth_secret_arn = module.cache.auth_secret_arn

  bedrock_model_id   = var.bedrock_model_id
  bedrock_model_arns = local.bedrock_model_arns
  max_event_size     = var.max_event_size

  min_capacity = lookup(var.min_capacity, each.key, 0)
  max_capacity = var.max_capacity
  kms_key_arn  = var.kms_key_arn
}
