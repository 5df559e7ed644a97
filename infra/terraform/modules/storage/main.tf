# The results bucket: objects under <service>/tenant=<id>/year=…/month=…/day=…/hour=…/.
# Encrypted with a key of its own, versioned, never public, TLS only, and expired per
# prefix (analytics sooner than the rest).

data "aws_caller_identity" "current" {}

resource "aws_kms_key" "results" {
  description         = "${var.bucket_name} results"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "account-administers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_s3_bucket" "results" {
  # checkov:skip=CKV_AWS_144:Results can be regenerated from the database and the queues' archives; one region per client stack is the design.
  # checkov:skip=CKV2_AWS_62:Nothing consumes object-created events: the database records every result key.
  # checkov:skip=CKV_AWS_18:Access is by the services' own roles only; CloudTrail data events are the audit trail, not a second logging bucket per client.
  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.results.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket = aws_s3_bucket.results.id

  rule {
    id     = "analytics"
    status = "Enabled"
    filter {
      prefix = "analytics/"
    }
    expiration {
      days = var.analytics_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Every other result object. Where two rules match (analytics/), S3 applies the
  # earlier expiration, so analytics keeps its shorter one.
  rule {
    id     = "results"
    status = "Enabled"
    filter {}
    expiration {
      days = var.results_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "results" {
  bucket = aws_s3_bucket.results.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "tls-only"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.results.arn, "${aws_s3_bucket.results.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.results]
}
