variable "name_prefix" {
  description = "Prefix of every role's name (the instance name)"
  type        = string
}

variable "trusted_service" {
  description = "The AWS service that runs the processes and assumes the roles"
  type        = string
  default     = "ecs-tasks.amazonaws.com"
}

variable "topic_arns" {
  description = "Topic ARN per service (module messaging)"
  type        = map(string)
}

variable "queue_arns" {
  description = "Queue ARN per use case (module messaging)"
  type        = map(string)
}

variable "dlq_arns" {
  description = "Dead-letter queue ARN per use case (module messaging)"
  type        = map(string)
}

variable "messaging_kms_key_arn" {
  description = "The key of topics and queues (module messaging)"
  type        = string
}

variable "bus_arn" {
  description = "The event bus (module eventbus)"
  type        = string
}

variable "bucket_arn" {
  description = "The results bucket (module storage)"
  type        = string
}

variable "results_kms_key_arn" {
  description = "The key of the results bucket (module storage)"
  type        = string
}

variable "alarms_queue_arn" {
  description = "The queue CloudWatch alarms arrive on (module monitoring)"
  type        = string
}

variable "alerts_kms_key_arn" {
  description = "The key of the alarms queue (module monitoring)"
  type        = string
}

variable "ses_identity_arns" {
  description = "SES identities the email worker may send from (empty: it uses SendGrid)"
  type        = list(string)
  default     = []
}
