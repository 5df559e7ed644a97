variable "client" {
  description = "The client this stack serves (cost-allocation tag `client`)"
  type        = string
}

variable "instance" {
  description = "Resource-name prefix, {instance}-{use case}: e.g. acme-prod (SWITCHYARD_INSTANCE)"
  type        = string
}

variable "environment" {
  description = "production or staging (SWITCHYARD_ENVIRONMENT)"
  type        = string
}

variable "region" {
  description = "The AWS region of the stack"
  type        = string
}

variable "results_bucket" {
  description = "Name of the results bucket (globally unique)"
  type        = string
}

variable "event_rules" {
  description = "Routing rules on the event bus: name => description and event pattern (JSON)"
  type = map(object({
    description   = string
    event_pattern = string
  }))
  default = {}
}

variable "archive_retention_days" {
  description = "How long the event archive keeps events for replay"
  type        = number
  default     = 30
}

variable "analytics_expiration_days" {
  description = "Days analytics objects are kept"
  type        = number
  default     = 90
}

variable "results_expiration_days" {
  description = "Days other result objects are kept"
  type        = number
  default     = 400
}

variable "ses_identity_arns" {
  description = "SES identities the email worker may send from (empty: SendGrid)"
  type        = list(string)
  default     = []
}
