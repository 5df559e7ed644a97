output "topic_arns" {
  description = "Topic ARN per service"
  value       = { for k, t in aws_sns_topic.this : k => t.arn }
}

output "queue_arns" {
  description = "Queue ARN per use case"
  value       = { for k, q in aws_sqs_queue.this : k => q.arn }
}

output "queue_names" {
  description = "Queue name per use case"
  value       = { for k, q in aws_sqs_queue.this : k => q.name }
}

output "dlq_arns" {
  description = "Dead-letter queue ARN per use case"
  value       = { for k, q in aws_sqs_queue.dlq : k => q.arn }
}

output "dlq_names" {
  description = "Dead-letter queue name per use case"
  value       = { for k, q in aws_sqs_queue.dlq : k => q.name }
}

output "kms_key_arn" {
  description = "The key that encrypts topics and queues (publishers and consumers need it)"
  value       = aws_kms_key.messaging.arn
}
