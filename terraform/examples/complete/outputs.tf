output "bus_name" {
  description = "Name of the event bus (AGENTBUS_BUS_NAME for `agentbus run`)."
  value       = module.bus.name
}

output "bus_arn" {
  description = "ARN of the event bus."
  value       = module.bus.arn
}

output "queue_urls" {
  description = "SQS queue URL of every catalog queue."
  value       = { for q, s in module.subscriber : q => s.queue_url }
}

output "dlq_urls" {
  description = "DLQ URL of every catalog queue."
  value       = { for q, s in module.subscriber : q => s.dlq_url }
}

output "table_name" {
  description = "Name of the state table (AGENTBUS_TABLE)."
  value       = module.state.table_name
}

output "bucket_name" {
  description = "Name of the blob bucket (AGENTBUS_BUCKET)."
  value       = module.state.bucket_name
}

output "redis_address" {
  description = "host:port of the Redis primary endpoint (TLS)."
  value       = module.cache.address
}

output "task_role_arns" {
  description = "Task role ARN of every service."
  value       = { for n, s in module.service : n => s.task_role_arn }
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "saga_queue_url" {
  description = "URL of the saga queue the state machines send tasks to (AGENTBUS_SAGA_QUEUE_URL of the tool-gateway)."
  value       = module.saga_queue.queue_url
}

output "saga_state_machine_arns" {
  description = "State machine ARN of every saga, by saga name."
  value       = { for n, s in module.saga : n => s.state_machine_arn }
}
