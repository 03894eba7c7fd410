# One agentbus service on ECS Fargate: `agentbus serve <name>` from the one
# image, configured only through the environment contract of docs/deploy.md,
# with a task role made of exactly the IAM actions its adapters declare in Go
# (iam_actions.auto.tf.json is generated from them: go generate ./deploy).

data "aws_region" "current" {}

locals {
  full_name = "${var.name_prefix}-${var.name}"

  # Adapters this service uses and the actions each declares (generated).
  adapters = local.agentbus_service_adapters[var.name]

  # What each adapter's actions apply to: never "*".
  adapter_resources = {
    eventbridge = [var.bus_arn]
    sqs         = [var.queue_arn, var.dlq_arn]
    s3          = [var.bucket_arn, "${var.bucket_arn}/*"]
    dynamodb    = [var.table_arn] # the table has no indexes
    bedrock     = var.bedrock_model_arns
  }

  task_statements = {
    for a in local.adapters : a => {
      actions   = local.agentbus_adapter_iam_actions[a]
      resources = local.adapter_resources[a]
    }
  }

  # The configuration of `agentbus serve` (its settings table in
  # cmd/agentbus/awsconfig.go, see docs/deploy.md). These win over
  # var.environment. The Redis AUTH token is not here: ECS injects it from
  # Secrets Manager (local.secrets).
  environment = merge(var.environment, {
    AGENTBUS_MODE             = "aws"
    AWS_REGION                = data.aws_region.current.region
    AGENTBUS_BUS_NAME         = var.bus_name
    AGENTBUS_QUEUE_URL        = var.queue_url
    AGENTBUS_DLQ_URL          = var.dlq_url
    AGENTBUS_TABLE            = var.table_name
    AGENTBUS_BUCKET           = var.bucket_name
    AGENTBUS_REDIS_ADDR       = var.redis_addr
    AGENTBUS_REDIS_TLS        = "true"
    AGENTBUS_BEDROCK_MODEL_ID = var.bedrock_model_id
    AGENTBUS_MAX_EVENT_SIZE   = tostring(var.max_event_size)
  })

  secrets = {
    AGENTBUS_REDIS_PASSWORD = var.redis_auth_secret_arn
  }
}

# ---------------------------------------------------------------- task role

data "aws_iam_policy_document" "assume_task" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${local.full_name}-task"
  description        = "agentbus ${var.name}: the IAM actions its adapters declare, on this deployment's resources."
  assume_role_policy = data.aws_iam_policy_document.assume_task.json

  tags = var.tags
}

data "aws_iam_policy_document" "task" {
  dynamic "statement" {
    for_each = local.task_statements

    content {
      sid       = statement.key
      effect    = "Allow"
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "adapters"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json

  lifecycle {
    precondition {
      condition     = !contains(local.adapters, "bedrock") || length(var.bedrock_model_arns) > 0
      error_message = "The ${var.name} service calls Bedrock: give bedrock_model_arns."
    }
  }
}

# ----------------------------------------------------------- execution role

resource "aws_iam_role" "execution" {
  name               = "${local.full_name}-execution"
  description        = "ECS agent for agentbus ${var.name}: pull the image, write logs, read the Redis AUTH secret."
  assume_role_policy = data.aws_iam_policy_document.assume_task.json

  tags = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:log-stream:*"]
  }

  statement {
    sid       = "RedisAuthSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.redis_auth_secret_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "DecryptSecret"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]

    content {
      sid       = "PullImage"
      effect    = "Allow"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  # ecr:GetAuthorizationToken has no resource-level permissions: "*" is the
  # only resource it accepts (allow-listed in deploy's IAM check).
  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]

    content {
      sid       = "EcrLogin"
      effect    = "Allow"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --------------------------------------------------------------------- task

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${local.full_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.full_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = var.name
    image                  = var.image
    essential              = true
    command                = ["serve", var.name]
    readonlyRootFilesystem = true
    # Time to finish or release in-flight messages after SIGTERM.
    stopTimeout = 60
    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets     = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = var.name
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name             = local.full_name
  cluster          = var.cluster_arn
  task_definition  = aws_ecs_task_definition.this.arn
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  desired_count    = var.min_capacity
  propagate_tags   = "SERVICE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  # Autoscaling owns the task count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  tags = var.tags
}

# -------------------------------------------------------------- autoscaling
#
# Scaling follows the queue, not CPU: the work is waiting in SQS. Step scaling
# on CloudWatch alarms (not target tracking) because target tracking
# multiplies the current task count and so can never leave zero. Scale-out:
# any visible backlog adds tasks every minute (more for a deeper backlog).
# Scale-in: only when the queue has been completely empty (nothing visible,
# nothing in flight) for scale_in_idle_minutes, straight to min_capacity, so a
# busy service is never shrunk under in-flight work.

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${element(split("/", var.cluster_arn), 1)}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
}

resource "aws_appautoscaling_policy" "scale_out" {
  name               = "${local.full_name}-backlog"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.messages_per_task
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = var.messages_per_task
      metric_interval_upper_bound = var.messages_per_task * 10
      scaling_adjustment          = 2
    }

    step_adjustment {
      metric_interval_lower_bound = var.messages_per_task * 10
      scaling_adjustment          = 4
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "backlog" {
  alarm_name          = "${local.full_name}-backlog"
  alarm_description   = "Messages wait in ${var.queue_name}: add ${var.name} tasks."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.scale_out.arn]

  tags = var.tags
}

resource "aws_appautoscaling_policy" "scale_in" {
  name               = "${local.full_name}-idle"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    # Applies below the alarm threshold (no message visible or in flight).
    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = var.min_capacity
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "idle" {
  alarm_name          = "${local.full_name}-idle"
  alarm_description   = "${var.queue_name} has been empty for ${var.scale_in_idle_minutes} minutes: scale ${var.name} in to ${var.min_capacity}."
  evaluation_periods  = var.scale_in_idle_minutes
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  # SQS stops publishing metrics for a queue idle for hours: no data = idle.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_appautoscaling_policy.scale_in.arn]

  metric_query {
    id          = "work"
    expression  = "visible + inflight"
    label       = "Messages visible or in flight"
    return_data = true
  }

  metric_query {
    id = "visible"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.queue_name }
      period      = 60
      stat        = "Maximum"
    }
  }

  metric_query {
    id = "inflight"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = var.queue_name }
      period      = 60
      stat        = "Maximum"
    }
  }

  tags = var.tags
}
