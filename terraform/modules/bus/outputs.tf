output "name" {
  description = "Name of the event bus (AGENTBUS_BUS_NAME)."
  value       = aws_cloudwatch_event_bus.this.name
}

output "arn" {
  description = "ARN of the event bus."
  value       = aws_cloudwatch_event_bus.this.arn
}

output "archive_arn" {
  description = "ARN of the archive that keeps the bus's events for replay."
  value       = aws_cloudwatch_event_archive.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group that receives the bus logs (failed invocations)."
  value       = aws_cloudwatch_log_group.bus.name
}
