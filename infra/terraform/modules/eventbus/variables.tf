variable "bus_name" {
  description = "The custom event bus ({instance}-events; SWITCHYARD_EVENTBRIDGE_BUS)"
  type        = string
}

variable "rules" {
  description = "Routing rules on the bus: name => description and event pattern (JSON)"
  type = map(object({
    description   = string
    event_pattern = string
  }))
  default = {}
}

variable "archive_retention_days" {
  description = "How long the archive keeps events for replay"
  type        = number
  default     = 30
}
