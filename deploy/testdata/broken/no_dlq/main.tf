# Broken on purpose: the queue has no redrive policy, so no DLQ.
resource "aws_sqs_queue" "q" {
  name = "orders"
}
