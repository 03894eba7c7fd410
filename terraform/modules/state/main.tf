# The state store's single table (see docs/state.md: partition key pk, sort
# key sk, TTL attribute expiresAt) and the blob bucket it and the claim check
# spill large payloads into.

resource "aws_dynamodb_table" "this" {
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  # TTL is only a clean-up: DynamoDB may delete expired items days late, so
  # the store checks expiresAt itself on every read.
  ttl {
    attribute_name = "expiresAt"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_s3_bucket" "blobs" {
  # checkov:skip=CKV_AWS_18: access logging needs a second bucket per deployment; CloudTrail data events are the recommended audit trail for this bucket.
  # checkov:skip=CKV_AWS_144: cross-region replication is a disaster-recovery choice of the deployer, not a default of this module.
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket event notifications; agentbus reads blobs by reference.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "blobs" {
  bucket                  = aws_s3_bucket.blobs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    # Old versions exist only because versioning guards against overwrite
    # mistakes; keep them a week.
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  dynamic "rule" {
    for_each = var.blob_expiration_days > 0 ? [var.blob_expiration_days] : []

    content {
      id     = "expire-blobs"
      status = "Enabled"

      filter {}

      expiration {
        days = rule.value
      }
    }
  }
}
