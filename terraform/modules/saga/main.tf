# One saga = one STANDARD Step Functions state machine from the ASL that
# agentbus generates from the saga definition (committed under
# terraform/sagas/, checked to be up to date by saga's tests), its role and
# its execution logs. Every Task state sends its task to the saga queue
# (arn:aws:states:::sqs:sendMessage.waitForTaskToken) and waits for the
# tool-gateway's SendTaskSuccess/SendTaskFailure; the role can do nothing
# else but send to that queue, write logs and traces.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  full_name = "${var.name_prefix}-saga-${var.name}"
  # Built from the name, not from the resource, so the role's trust policy
  # can name the state machine that assumes it without a cycle.
  state_machine_arn = "arn:${data.aws_partition.current.partition}:states:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:stateMachine:${local.full_name}"
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "StepFunctionsForThisStateMachine"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }

    # Confused-deputy protection: only this account's state machine of
    # this name may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.state_machine_arn]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = local.full_name
  description        = "Step Functions role of the agentbus saga ${var.name}: send tasks to the saga queue, write logs and traces."
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(local.full_name) <= 64
      error_message = "\"${local.full_name}\" is longer than 64 characters, the limit of IAM role names (and of this module's names): use a shorter name_prefix or saga name."
    }
  }
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "SendTasksToTheSagaQueue"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [var.queue_arn]
  }

  # Vended log delivery: AWS documents these CloudWatch Logs actions with
  # Resource "*" for Step Functions logging (allow-listed in deploy's IAM
  # check, each with its reason).
  statement {
    sid    = "ExecutionLogDelivery"
    effect = "Allow"
    actions = [
      "logs:CreateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:DescribeLogGroups",
      "logs:DescribeResourcePolicies",
      "logs:GetLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:UpdateLogDelivery",
    ]
    resources = ["*"]
  }

  # X-Ray tracing: these actions have no resource-level permissions.
  statement {
    sid    = "Tracing"
    effect = "Allow"
    actions = [
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
      "xray:PutTelemetryRecords",
      "xray:PutTraceSegments",
    ]
    resources = ["*"]
  }

  # With a customer managed key: the execution data is encrypted with it,
  # and a queue encrypted with it needs the sender to use the key.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "UseTheKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "saga"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_cloudwatch_log_group" "this" {
  # The /aws/vendedlogs/ prefix keeps the log resource policy that Step
  # Functions' log delivery writes small (AWS's recommendation).
  name              = "/aws/vendedlogs/states/${local.full_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_sfn_state_machine" "this" {
  name     = local.full_name
  type     = "STANDARD"
  role_arn = aws_iam_role.this.arn
  definition = templatefile(var.definition_file, {
    queue_url = var.queue_url
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.this.arn}:*"
    include_execution_data = var.log_include_execution_data
    level                  = var.log_level
  }

  tracing_configuration {
    enabled = true
  }

  dynamic "encryption_configuration" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      type                              = "CUSTOMER_MANAGED_KMS_KEY"
      kms_key_id                        = encryption_configuration.value
      kms_data_key_reuse_period_seconds = 300
    }
  }

  tags = var.tags

  # The role's policy must exist before Step Functions checks that it may
  # deliver logs.
  depends_on = [aws_iam_role_policy.this]
}
