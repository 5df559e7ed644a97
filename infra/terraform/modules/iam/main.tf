# Least privilege per process: the API and the relay publish, each worker consumes its
# own queue and writes its own prefix of the results bucket, the control plane parks
# dead letters and redrives them, the monitor reads the dead-letter queues. Every
# process may read the topology (the start-up check).

locals {
  # The object prefix each worker writes.
  worker_prefixes = {
    "feedback"        = "feedback"
    "email"           = "email"
    "analytics"       = "analytics"
    "testflight"      = "testflight"
    "access-requests" = "access-requests"
    "webhooks"        = "webhooks"
  }
  all_queue_arns = concat(values(var.queue_arns), values(var.dlq_arns))
  topology_read = [
    {
      Sid      = "listTopics"
      Effect   = "Allow"
      Action   = ["sns:ListTopics"]
      Resource = "*"
    },
    {
      Sid      = "readTopology"
      Effect   = "Allow"
      Action   = ["sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic", "sns:GetSubscriptionAttributes"]
      Resource = concat(values(var.topic_arns), [for arn in values(var.topic_arns) : "${arn}:*"])
    },
    {
      Sid      = "readQueues"
      Effect   = "Allow"
      Action   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
      Resource = local.all_queue_arns
    },
  ]
  publish_events = {
    Sid      = "publishEvents"
    Effect   = "Allow"
    Action   = ["events:PutEvents", "events:DescribeEventBus"]
    Resource = [var.bus_arn]
  }
  messaging_key = {
    Sid      = "useMessagingKey"
    Effect   = "Allow"
    Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
    Resource = [var.messaging_kms_key_arn]
  }
  roles = merge(
    {
      api = concat(local.topology_read, [
        local.messaging_key,
        local.publish_events,
        {
          Sid      = "publishOwnTopic"
          Effect   = "Allow"
          Action   = ["sns:Publish"]
          Resource = [var.topic_arns["core-api"]]
        },
      ])
      relay = concat(local.topology_read, [
        local.messaging_key,
        local.publish_events,
        {
          Sid      = "publishEveryTopic"
          Effect   = "Allow"
          Action   = ["sns:Publish"]
          Resource = values(var.topic_arns)
        },
        {
          Sid      = "readRules"
          Effect   = "Allow"
          Action   = ["events:ListRules"]
          Resource = ["*"]
        },
      ])
      # The control plane drains every dead-letter queue into the store (receive, then
      # delete once parked), redrives parked messages to their source queues (send
      # only: the plans, jobs and parked copies are in the store) and reads every
      # queue's counts for the queue statistics (readQueues), so nothing else.
      control-plane = concat(local.topology_read, [
        local.messaging_key,
        {
          Sid      = "parkDeadLetters"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
          Resource = values(var.dlq_arns)
        },
        {
          Sid      = "redriveToSourceQueues"
          Effect   = "Allow"
          Action   = ["sqs:SendMessage"]
          Resource = values(var.queue_arns)
        },
      ])
      monitor = concat(local.topology_read, [
        local.messaging_key,
        {
          Sid      = "watchDeadLetters"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"]
          Resource = values(var.dlq_arns)
        },
        {
          Sid      = "forwardAlarms"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
          Resource = [var.alarms_queue_arn]
        },
        {
          Sid      = "readAlarms"
          Effect   = "Allow"
          Action   = ["kms:Decrypt"]
          Resource = [var.alerts_kms_key_arn]
        },
      ])
    },
    {
      for use_case, prefix in local.worker_prefixes : "worker-${use_case}" => concat(local.topology_read, [
        local.messaging_key,
        {
          Sid      = "consumeOwnQueue"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
          Resource = [var.queue_arns[use_case]]
        },
        {
          # The consumer counts attempts itself and moves a message that failed its
          # last one to the dead-letter queue (send there, then delete from its queue).
          Sid      = "deadLetterOwnMessages"
          Effect   = "Allow"
          Action   = ["sqs:SendMessage"]
          Resource = [var.dlq_arns[use_case]]
        },
        {
          Sid      = "writeOwnPrefix"
          Effect   = "Allow"
          Action   = ["s3:PutObject"]
          Resource = ["${var.bucket_arn}/${prefix}/*"]
        },
        {
          Sid      = "encryptResults"
          Effect   = "Allow"
          Action   = ["kms:GenerateDataKey"]
          Resource = [var.results_kms_key_arn]
        },
      ], use_case == "email" && length(var.ses_identity_arns) > 0 ? [{
        Sid      = "sendEmail"
        Effect   = "Allow"
        Action   = ["ses:SendEmail"]
        Resource = var.ses_identity_arns
      }] : [])
    },
  )
}

resource "aws_iam_role" "this" {
  for_each = local.roles

  name = "${var.name_prefix}-${each.key}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = var.trusted_service }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "this" {
  for_each = local.roles

  name   = "${var.name_prefix}-${each.key}"
  role   = aws_iam_role.this[each.key].id
  policy = jsonencode({ Version = "2012-10-17", Statement = each.value })
}
