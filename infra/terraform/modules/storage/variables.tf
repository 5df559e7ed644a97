variable "bucket_name" {
  description = "The results bucket (SWITCHYARD_S3_BUCKET)"
  type        = string
}

variable "analytics_expiration_days" {
  description = "Days analytics objects are kept (shorter than the rest)"
  type        = number
  default     = 90
}

variable "results_expiration_days" {
  description = "Days the other result objects (feedback, email, testflight, access requests) are kept"
  type        = number
  default     = 400
}

variable "noncurrent_expiration_days" {
  description = "Days an overwritten or deleted object version is kept"
  type        = number
  default     = 30
}
