output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_role_arn" {
  description = "ARN of the task role (a publisher of the bus; grant it KMS key use in key policies when customer managed keys are used)."
  value       = aws_iam_role.task.arn
}

output "task_role_name" {
  description = "Name of the task role."
  value       = aws_iam_role.task.name
}

output "execution_role_arn" {
  description = "ARN of the task execution role."
  value       = aws_iam_role.execution.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the service."
  value       = aws_cloudwatch_log_group.this.name
}

output "iam_actions" {
  description = "The IAM actions of the task role (the union of the service's adapters' declared actions)."
  value       = sort(distinct(flatten([for s in local.task_statements : s.actions])))
}
