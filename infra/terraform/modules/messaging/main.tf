# SNS FIFO topics (one per service), SQS FIFO queues with their dead-letter queues, and
# the subscriptions between them, exactly as the topology module declares them. The
# services check this at start-up (read-only) and name anything that differs.

data "aws_caller_identity" "current" {}

# Topics and queues are encrypted with a key of their own; SNS may use it to deliver
# into the encrypted queues, the services through their roles (module iam).
resource "aws_kms_key" "messaging" {
  description         = "${var.name_prefix} Switchyard topics and queues"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "account-administers"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "sns-delivers-to-encrypted-queues"
        Effect    = "Allow"
        Principal = { Service = "sns.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
      },
    ]
  })
}

resource "aws_kms_alias" "messaging" {
  name          = "alias/${var.name_prefix}-messaging"
  target_key_id = aws_kms_key.messaging.key_id
}

resource "aws_sns_topic" "this" {
  for_each = var.topics

  name                        = each.value
  fifo_topic                  = true
  content_based_deduplication = false
  kms_master_key_id           = aws_kms_key.messaging.arn
}

resource "aws_sqs_queue" "dlq" {
  for_each = var.queues

  name                        = each.value.dlq_name
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = each.value.dlq_retention_seconds
  visibility_timeout_seconds  = each.value.visibility_timeout_seconds
  kms_master_key_id           = aws_kms_key.messaging.arn
}

resource "aws_sqs_queue" "this" {
  for_each = var.queues

  name                        = each.value.name
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = each.value.retention_seconds
  visibility_timeout_seconds  = each.value.visibility_timeout_seconds
  kms_master_key_id           = aws_kms_key.messaging.arn
  # High-throughput FIFO: the quota is per message group (tenant and ordering key).
  deduplication_scope   = each.value.high_throughput ? "messageGroup" : "queue"
  fifo_throughput_limit = each.value.high_throughput ? "perMessageGroupId" : "perQueue"
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
}

# A dead-letter queue takes messages from its own queue only.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = var.queues

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.this[each.key].arn]
  })
}

locals {
  # The topics that feed each queue, in the topology's order.
  feeding_topics = {
    for queue in keys(var.queues) : queue => [
      for s in var.subscriptions : aws_sns_topic.this[s.topic].arn if s.queue == queue
    ]
  }
}

# Only the queue's own topics may send to it (the same policy the services check).
resource "aws_sqs_queue_policy" "this" {
  for_each = { for queue, topics in local.feeding_topics : queue => topics if length(topics) > 0 }

  queue_url = aws_sqs_queue.this[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "switchyard-topics"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.this[each.key].arn
      Condition = { ArnEquals = { "aws:SourceArn" = each.value } }
    }]
  })
}

# Created with the topics: SNS accepts a publish to a topic without subscriptions and
# drops it, so a topic must never exist without its subscriptions.
resource "aws_sns_topic_subscription" "this" {
  for_each = { for s in var.subscriptions : s.key => s }

  topic_arn            = aws_sns_topic.this[each.value.topic].arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.this[each.value.queue].arn
  raw_message_delivery = each.value.raw_delivery
  filter_policy_scope  = "MessageAttributes"
  filter_policy        = each.value.filter_policy

  depends_on = [aws_sqs_queue_policy.this]
}
