output "runtime_env" {
  description = "Environment variables for every Switchyard process of this stack (add the database URL and provider secrets from your secret store)"
  value = {
    SWITCHYARD_INSTANCE         = var.instance
    SWITCHYARD_ENVIRONMENT      = var.environment
    SWITCHYARD_TRANSPORT        = "aws"
    SWITCHYARD_OBJECTS          = "s3"
    SWITCHYARD_S3_BUCKET        = module.storage.bucket_name
    SWITCHYARD_AWS_REGION       = var.region
    SWITCHYARD_EVENTBRIDGE      = "matching"
    SWITCHYARD_EVENTBRIDGE_BUS  = module.eventbus.bus_name
    SWITCHYARD_ALARMS_QUEUE     = module.monitoring.alarms_queue_name
  }
}

output "role_arns" {
  description = "The role each process runs as: api, relay, monitor, worker-<use case>"
  value       = module.iam.role_arns
}

output "dashboard" {
  description = "The client's CloudWatch dashboard"
  value       = module.monitoring.dashboard_name
}
