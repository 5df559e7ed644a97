variable "topics" {
  description = "FIFO topic name per service (the topology module's `topics` output)"
  type        = map(string)
}

variable "queues" {
  description = "FIFO queue and dead-letter queue per use case (the topology module's `queues` output)"
  type = map(object({
    name                       = string
    dlq_name                   = string
    retention_seconds          = number
    visibility_timeout_seconds = number
    max_receive_count          = number
    dlq_retention_seconds      = number
    high_throughput            = bool
  }))
}

variable "subscriptions" {
  description = "Topic-to-queue subscriptions (the topology module's `subscriptions` output)"
  type = list(object({
    key           = string
    topic         = string
    queue         = string
    raw_delivery  = bool
    filter_policy = string
  }))
}

variable "name_prefix" {
  description = "Prefix of the key's alias (the instance name)"
  type        = string
}
