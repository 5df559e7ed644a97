output "bus_name" {
  description = "The bus's name (SWITCHYARD_EVENTBRIDGE_BUS)"
  value       = aws_cloudwatch_event_bus.this.name
}

output "bus_arn" {
  description = "The bus's ARN"
  value       = aws_cloudwatch_event_bus.this.arn
}
