output "address" {
  description = "host:port of the primary endpoint (AGENTBUS_REDIS_ADDR); TLS only."
  value       = "${aws_elasticache_replication_group.this.primary_endpoint_address}:${var.port}"
}

output "auth_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the AUTH token (AGENTBUS_REDIS_AUTH_SECRET_ARN)."
  value       = aws_secretsmanager_secret.auth.arn
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
