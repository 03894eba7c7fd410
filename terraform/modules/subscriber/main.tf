# One subscriber = one SQS queue with its DLQ, and the EventBridge rules that
# feed it. The queue policy lets only these rules send, so a new rule on the
# bus cannot deliver into the queue unless it is added here. With no rules
# it is a plain queue + DLQ (the saga queue: Step Functions sends to it).

locals {
  queue_name = "${var.name_prefix}-${var.name}"
  dlq_name   = "${local.queue_name}-dlq"

  file_rules = [for f in var.rule_files : jsondecode(file(f))]
  rules = merge(
    { for r in local.file_rules : r.name => { description = r.description, event_pattern = jsonencode(r.eventPattern), queue = r.target.queue } },
    { for k, r in var.rules : k => { description = r.description, event_pattern = r.event_pattern, queue = var.name } },
  )
}

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = var.dlq_message_retention_seconds
  kms_master_key_id         = var.kms_master_key_id
  sqs_managed_sse_enabled   = var.kms_master_key_id == null ? true : null

  tags = var.tags
}

resource "aws_sqs_queue" "this" {
  name                       = local.queue_name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = var.receive_wait_time_seconds
  kms_master_key_id          = var.kms_master_key_id
  sqs_managed_sse_enabled    = var.kms_master_key_id == null ? true : null

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the queue itself may move messages into its DLQ (and back, by redrive).
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.this.arn]
  })
}

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.rules

  name           = each.key
  description    = each.value.description
  event_bus_name = var.event_bus_name
  event_pattern  = each.value.event_pattern

  tags = var.tags

  lifecycle {
    precondition {
      condition     = each.value.queue == var.name
      error_message = "Rule ${each.key} targets queue ${each.value.queue}, not this subscriber (${var.name})."
    }
  }
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = local.rules

  rule           = aws_cloudwatch_event_rule.this[each.key].name
  event_bus_name = var.event_bus_name
  target_id      = "queue"
  arn            = aws_sqs_queue.this.arn

  retry_policy {
    maximum_event_age_in_seconds = var.retry_maximum_event_age_seconds
    maximum_retry_attempts       = var.retry_maximum_attempts
  }

  # Events EventBridge could not deliver land in the same DLQ as messages the
  # service could not handle, so one `agentbus dlq` view shows both.
  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

# The queue policy admits only the rules above. A subscriber without rules
# (a queue fed by something else, such as the saga queue Step Functions
# sends to under its role's identity policy) gets no queue policy.
data "aws_iam_policy_document" "queue" {
  dynamic "statement" {
    for_each = length(keys(local.rules)) > 0 ? ["rules"] : []

    content {
      sid     = "OnlyTheseRules"
      effect  = "Allow"
      actions = ["sqs:SendMessage"]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }

      resources = [aws_sqs_queue.this.arn]

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [for r in aws_cloudwatch_event_rule.this : r.arn]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "this" {
  count = length(keys(local.rules)) > 0 ? 1 : 0

  queue_url = aws_sqs_queue.this.id
  policy    = data.aws_iam_policy_document.queue.json
}

data "aws_iam_policy_document" "dlq" {
  dynamic "statement" {
    for_each = length(keys(local.rules)) > 0 ? ["rules"] : []

    content {
      sid     = "TargetDeadLetterFromTheseRules"
      effect  = "Allow"
      actions = ["sqs:SendMessage"]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }

      resources = [aws_sqs_queue.dlq.arn]

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [for r in aws_cloudwatch_event_rule.this : r.arn]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  count = length(keys(local.rules)) > 0 ? 1 : 0

  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}
