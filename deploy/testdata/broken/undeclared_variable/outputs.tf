output "queue_name" {
  description = "Name of the SQS queue."
  value       = aws_sqs_queue.this.name
}

output "queue_url" {
  description = "URL of the SQS queue (AGENTBUS_QUEUE_URL of the service that consumes it)."
  value       = aws_sqs_queue.this.url
}

output "queue_arn" {
  description = "ARN of the SQS queue."
  value       = aws_sqs_queue.this.arn
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_url" {
  description = "URL of the dead-letter queue (AGENTBUS_DLQ_URL)."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "rule_arns" {
  description = "ARNs of the EventBridge rules that deliver to the queue, by rule name."
  value       = { for k, r in aws_cloudwatch_event_rule.this : k => r.arn }
}
