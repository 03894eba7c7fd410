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
  rules = merge({
    for r in each.value : r.name => {
      description   = r.description
      event_pattern = jsonencode(r.eventPattern)
    }
  }, each.key == "toolgateway" ? local.saga_rules : {})
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

  # The tool-gateway runs the sagas (worker and runner) when the image holds
  # their definitions (var.saga_definitions_dir).
  environment = each.key == "toolgateway" && var.saga_definitions_dir != null ? local.saga_environment : {}

  min_capacity = lookup(var.min_capacity, each.key, 0)
  max_capacity = var.max_capacity
  kms_key_arn  = var.kms_key_arn
}

# Sagas (docs/sagas.md): one Step Functions state machine per generated
# definition under terraform/sagas/ (saga's tests keep those files equal to
# what agentbus generates from examples/sagas/). Every Task state sends its
# task to the saga queue; the tool-gateway's saga worker answers it.
locals {
  sagas_dir = "${path.module}/../../sagas"
  sagas     = toset([for f in fileset(local.sagas_dir, "*.asl.json.tftpl") : replace(f, ".asl.json.tftpl", "")])
}

locals {
  # agentbus serve toolgateway's saga settings (docs/sagas.md).
  saga_environment = {
    AGENTBUS_SAGA_QUEUE_URL      = module.saga_queue.queue_url
    AGENTBUS_SAGA_DLQ_URL        = module.saga_queue.dlq_url
    AGENTBUS_SAGA_STATE_MACHINES = join(",", [for n, s in module.saga : "${n}=${s.state_machine_arn}"])
    AGENTBUS_SAGAS_DIR           = var.saga_definitions_dir
  }

  # A model's call of a saga is a ToolInvocationRequested whose toolname is
  # the saga's name; the catalog's toolgateway-builtin-tools rule names only
  # the built-ins, so this rule routes the saga names (the same set the state
  # machines are built from) to the tool-gateway's queue. Only when the
  # tool-gateway offers the sagas; `agentbus run`/`dev` add the same rule
  # in-process and `agentbus stack bootstrap --sagas-dir` on AWS.
  saga_rules = var.saga_definitions_dir != null && length(local.sagas) > 0 ? {
    "toolgateway-sagas" = {
      description = "Calls of saga tools: the tool-gateway starts the saga and reports its outcome."
      event_pattern = jsonencode({
        "detail-type" = ["agentbus.tool.invocation.requested.v1"]
        detail        = { toolname = sort(local.sagas) }
      })
    }
  } : {}
}

module "saga_queue" {
  source = "../../modules/subscriber"

  # "<name>-saga", the queue the Step Functions runner and worker use. No
  # rules: only the state machines (by their roles) send to it.
  name                       = "saga"
  name_prefix                = var.name
  event_bus_name             = module.bus.name
  visibility_timeout_seconds = 60
  max_receive_count          = 10
  kms_master_key_id          = var.kms_key_arn
}

module "saga" {
  source   = "../../modules/saga"
  for_each = local.sagas

  name            = each.key
  name_prefix     = var.name
  definition_file = "${local.sagas_dir}/${each.key}.asl.json.tftpl"
  queue_url       = module.saga_queue.queue_url
  queue_arn       = module.saga_queue.queue_arn
  kms_key_arn     = var.kms_key_arn
}

# The tool-gateway runs sagas: it starts and describes executions (the saga
# tool), and its worker consumes the saga queue and answers the task tokens.
# These are the Step Functions runner's and worker's declared IAM actions
# (platform/saga/stepfunctions RunnerIAMActions, WorkerIAMActions; deploy's
# tests keep them equal), scoped to the saga state machines and queue.
data "aws_iam_policy_document" "toolgateway_sagas" {
  statement {
    sid       = "StartSagas"
    effect    = "Allow"
    actions   = ["states:StartExecution"]
    resources = [for s in module.saga : s.state_machine_arn]
  }

  statement {
    sid       = "DescribeSagaExecutions"
    effect    = "Allow"
    actions   = ["states:DescribeExecution"]
    resources = [for s in module.saga : s.execution_arn_pattern]
  }

  statement {
    sid       = "AnswerSagaTasks"
    effect    = "Allow"
    actions   = ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"]
    resources = [for s in module.saga : s.state_machine_arn]
  }

  statement {
    sid       = "ConsumeSagaQueue"
    effect    = "Allow"
    actions   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
    resources = [module.saga_queue.queue_arn]
  }

  statement {
    sid       = "DeadLetterMalformedTasks"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [module.saga_queue.dlq_arn]
  }
}

resource "aws_iam_role_policy" "toolgateway_sagas" {
  name   = "sagas"
  role   = module.service["toolgateway"].task_role_name
  policy = data.aws_iam_policy_document.toolgateway_sagas.json
}
