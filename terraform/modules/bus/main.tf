# The agentbus event bus: a custom bus whose policy admits only named
# publishers, an archive for replay, and CloudWatch log delivery of failed
# invocations (EventBridge bus logging at ERROR level: a target that could
# not be reached after the retries, a rule that failed to deliver).

data "aws_caller_identity" "current" {}

resource "aws_cloudwatch_event_bus" "this" {
  name               = var.name
  kms_key_identifier = var.kms_key_arn

  log_config {
    include_detail = var.log_include_detail
    level          = "ERROR"
  }

  tags = var.tags
}

data "aws_iam_policy_document" "bus" {
  statement {
    sid     = "NamedPublishers"
    effect  = "Allow"
    actions = ["events:PutEvents"]

    principals {
      type        = "AWS"
      identifiers = var.publisher_principal_arns
    }

    resources = [aws_cloudwatch_event_bus.this.arn]
  }

  # Same-account identity policies would otherwise let any principal with
  # events:PutEvents on "*" publish: deny everyone who is not named.
  statement {
    sid     = "NobodyElse"
    effect  = "Deny"
    actions = ["events:PutEvents"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    resources = [aws_cloudwatch_event_bus.this.arn]

    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = var.publisher_principal_arns
    }
  }
}

resource "aws_cloudwatch_event_bus_policy" "this" {
  event_bus_name = aws_cloudwatch_event_bus.this.name
  policy         = data.aws_iam_policy_document.bus.json
}

resource "aws_cloudwatch_event_archive" "this" {
  name             = substr("${var.name}-archive", 0, 48)
  description      = "Every event of the ${var.name} bus, for replay."
  event_source_arn = aws_cloudwatch_event_bus.this.arn
  retention_days   = var.archive_retention_days
}

# Bus logs (failed invocations) -> CloudWatch Logs, through vended log
# delivery: a source on the bus, a destination on the log group, a delivery
# between them, and a log resource policy that lets the delivery service write.
resource "aws_cloudwatch_log_group" "bus" {
  name              = "/aws/vendedlogs/events/event-bus/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_cloudwatch_log_delivery_source" "errors" {
  name         = "EventBusSource-${var.name}-ERROR_LOGS"
  log_type     = "ERROR_LOGS"
  resource_arn = aws_cloudwatch_event_bus.this.arn

  tags = var.tags
}

data "aws_iam_policy_document" "log_delivery" {
  statement {
    sid     = "EventBusLogDelivery"
    effect  = "Allow"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]

    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }

    resources = ["${aws_cloudwatch_log_group.bus.arn}:log-stream:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_log_delivery_source.errors.arn]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "bus" {
  policy_name     = "AWSLogDeliveryWrite-${var.name}"
  policy_document = data.aws_iam_policy_document.log_delivery.json
}

resource "aws_cloudwatch_log_delivery_destination" "bus" {
  name = "EventsDeliveryDestination-${var.name}-CWLogs"

  delivery_destination_configuration {
    destination_resource_arn = aws_cloudwatch_log_group.bus.arn
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_delivery" "errors" {
  delivery_source_name     = aws_cloudwatch_log_delivery_source.errors.name
  delivery_destination_arn = aws_cloudwatch_log_delivery_destination.bus.arn

  depends_on = [aws_cloudwatch_log_resource_policy.bus]

  tags = var.tags
}
