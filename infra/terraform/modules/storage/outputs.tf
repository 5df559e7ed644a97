output "bucket_name" {
  description = "The results bucket (SWITCHYARD_S3_BUCKET)"
  value       = aws_s3_bucket.results.bucket
}

output "bucket_arn" {
  description = "The results bucket's ARN"
  value       = aws_s3_bucket.results.arn
}

output "kms_key_arn" {
  description = "The key that encrypts results (writers need kms:GenerateDataKey)"
  value       = aws_kms_key.results.arn
}
