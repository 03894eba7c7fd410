output "table_name" {
  description = "Name of the state table (AGENTBUS_TABLE)."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "ARN of the state table."
  value       = aws_dynamodb_table.this.arn
}

output "bucket_name" {
  description = "Name of the blob bucket (AGENTBUS_BUCKET)."
  value       = aws_s3_bucket.blobs.bucket
}

output "bucket_arn" {
  description = "ARN of the blob bucket."
  value       = aws_s3_bucket.blobs.arn
}
