output "alerts_topic_arn" {
  description = "Where the alarms publish"
  value       = aws_sns_topic.alerts.arn
}

output "alarms_queue_name" {
  description = "The queue `switchyard serve alarms` forwards to Discord (SWITCHYARD_ALARMS_QUEUE)"
  value       = aws_sqs_queue.alerts.name
}

output "alarms_queue_arn" {
  description = "The alarms queue's ARN"
  value       = aws_sqs_queue.alerts.arn
}

output "dashboard_name" {
  description = "The client's CloudWatch dashboard"
  value       = aws_cloudwatch_dashboard.client.dashboard_name
}

output "kms_key_arn" {
  description = "The key of the alerts topic and queue (the alarm forwarder decrypts with it)"
  value       = aws_kms_key.alerts.arn
}
