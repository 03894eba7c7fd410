# Broken on purpose: each.key without for_each.
resource "aws_sqs_queue" "q" {
  name = each.key

  redrive_policy = jsonencode({ deadLetterTargetArn = aws_sqs_queue.dlq.arn, maxReceiveCount = 5 })
}

resource "aws_sqs_queue" "dlq" {
  name = "dlq"
}
