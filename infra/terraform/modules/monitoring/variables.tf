variable "name_prefix" {
  description = "Prefix of the alerts topic, queue, alarms and dashboard (the instance name)"
  type        = string
}

variable "queue_names" {
  description = "Queue name per use case (module messaging)"
  type        = map(string)
}

variable "dlq_names" {
  description = "Dead-letter queue name per use case (module messaging)"
  type        = map(string)
}

variable "oldest_message_seconds" {
  description = "Alarm when a queue's oldest message is older than this"
  type        = number
  default     = 600
}

variable "region" {
  description = "The region, for the dashboard's widgets"
  type        = string
}
