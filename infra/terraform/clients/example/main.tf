# One Switchyard stack for one client and environment:
#   terraform init && terraform apply -var-file=production.tfvars
# Every resource carries the client, environment and service tags.

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      client      = var.client
      environment = var.environment
      service     = "switchyard"
    }
  }
}

module "topology" {
  source      = "../../modules/topology"
  instance    = var.instance
  environment = var.environment
}

module "messaging" {
  source        = "../../modules/messaging"
  name_prefix   = var.instance
  topics        = module.topology.topics
  queues        = module.topology.queues
  subscriptions = module.topology.subscriptions
}

module "eventbus" {
  source                 = "../../modules/eventbus"
  bus_name               = "${var.instance}-events"
  rules                  = var.event_rules
  archive_retention_days = var.archive_retention_days
}

module "storage" {
  source                    = "../../modules/storage"
  bucket_name               = var.results_bucket
  analytics_expiration_days = var.analytics_expiration_days
  results_expiration_days   = var.results_expiration_days
}

module "monitoring" {
  source      = "../../modules/monitoring"
  name_prefix = var.instance
  queue_names = module.messaging.queue_names
  dlq_names   = module.messaging.dlq_names
  region      = var.region
}

module "iam" {
  source                = "../../modules/iam"
  name_prefix           = var.instance
  topic_arns            = module.messaging.topic_arns
  queue_arns            = module.messaging.queue_arns
  dlq_arns              = module.messaging.dlq_arns
  messaging_kms_key_arn = module.messaging.kms_key_arn
  bus_arn               = module.eventbus.bus_arn
  bucket_arn            = module.storage.bucket_arn
  results_kms_key_arn   = module.storage.kms_key_arn
  alarms_queue_arn      = module.monitoring.alarms_queue_arn
  alerts_kms_key_arn    = module.monitoring.kms_key_arn
  ses_identity_arns     = var.ses_identity_arns
}
