# CloudWatch alarms per queue (a dead letter, an old message) publish to an alerts
# topic; its queue is read by `switchyard serve alarms`, which forwards each alarm to
# the deployment's Discord webhook. A dashboard per client shows every queue.

data "aws_caller_identity" "current" {}

# CloudWatch can only publish to an encrypted topic whose key lets it.
resource "aws_kms_key" "alerts" {
  description         = "${var.name_prefix} Switchyard alerts"
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
        Sid       = "alarms-and-delivery"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "sns.amazonaws.com"] }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
      },
    ]
  })
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  kms_master_key_id = aws_kms_key.alerts.arn
}

resource "aws_sqs_queue" "alerts_dlq" {
  name                      = "${var.name_prefix}-alerts-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.alerts.arn
}

resource "aws_sqs_queue" "alerts" {
  name                       = "${var.name_prefix}-alerts"
  message_retention_seconds  = 345600
  visibility_timeout_seconds = 60
  kms_master_key_id          = aws_kms_key.alerts.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.alerts_dlq.arn
    maxReceiveCount     = 3
  })
}

resource "aws_sqs_queue_policy" "alerts" {
  queue_url = aws_sqs_queue.alerts.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "alerts-topic"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.alerts.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_sns_topic.alerts.arn } }
    }]
  })
}

resource "aws_sns_topic_subscription" "alerts" {
  topic_arn            = aws_sns_topic.alerts.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.alerts.arn
  raw_message_delivery = true
  depends_on           = [aws_sqs_queue_policy.alerts]
}

# The control plane drains every dead-letter queue into the store as messages arrive
# (operators browse the parked copies), so a DLQ's depth stays near zero: the alarm is
# on what reaches it, which the control plane receives once each to park it.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = var.dlq_names

  alarm_name          = "${each.value}-has-messages"
  alarm_description   = "A message of the ${each.key} queue could not be handled after 3 attempts and moved to ${each.value}; it is parked for operators (GET /v1/dead-letters)."
  namespace           = "AWS/SQS"
  metric_name         = "NumberOfMessagesReceived"
  dimensions          = { QueueName = each.value }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

# A dead letter that stays in its queue means the control plane is not parking them.
resource "aws_cloudwatch_metric_alarm" "dead_letters_not_parked" {
  for_each = var.dlq_names

  alarm_name          = "${each.value}-not-parked"
  alarm_description   = "A dead letter waited in ${each.value} for more than 5 minutes: the control plane is not draining it into the store."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each = var.queue_names

  alarm_name          = "${each.value}-oldest-message"
  alarm_description   = "The oldest message of the ${each.key} queue waited more than ${var.oldest_message_seconds} s: its worker is down or too slow."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_dashboard" "client" {
  dashboard_name = "${var.name_prefix}-switchyard"
  dashboard_body = jsonencode({
    widgets = concat(
      [for i, use_case in sort(keys(var.queue_names)) : {
        type   = "metric"
        x      = (i % 3) * 8
        y      = floor(i / 3) * 6
        width  = 8
        height = 6
        properties = {
          title  = "${use_case}: depth and age"
          region = var.region
          stat   = "Maximum"
          period = 60
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names[use_case]],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_names[use_case], { yAxis = "right" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_names[use_case], { label = "dead letters" }],
          ]
        }
      }],
    )
  })
}
