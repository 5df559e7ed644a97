output "role_arns" {
  description = "Role ARN per process: api, relay, monitor, worker-<use case>"
  value       = { for k, r in aws_iam_role.this : k => r.arn }
}
