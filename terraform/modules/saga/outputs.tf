output "name" {
  description = "Name of the state machine (\"<name_prefix>-saga-<name>\")."
  value       = aws_sfn_state_machine.this.name
}

output "state_machine_arn" {
  description = "ARN of the state machine (what StartExecution takes)."
  value       = aws_sfn_state_machine.this.arn
}

output "execution_arn_pattern" {
  description = "ARN pattern of the state machine's executions (what DescribeExecution is scoped to)."
  value       = "arn:${data.aws_partition.current.partition}:states:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:execution:${local.full_name}:*"
}

output "role_arn" {
  description = "ARN of the state machine's role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the state machine's execution logs."
  value       = aws_cloudwatch_log_group.this.name
}
