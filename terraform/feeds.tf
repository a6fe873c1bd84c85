# The trucks' GPS feed: devices publish positions to an SNS topic (or send to the queue
# directly); the topic delivers into an SQS queue; the job gps_positions drains it into
# the lake every five minutes (its schedule is with the others, in stepfunctions.tf),
# exactly once. A message that keeps failing goes to the dead-letter queue after
# max_receive_count receives; alarms watch that queue's depth and the age of the oldest
# waiting position.

resource "aws_sqs_queue" "gps_dlq" {
  name                      = "${local.name}-gps-positions-dlq"
  kms_master_key_id         = aws_kms_key.main.arn
  message_retention_seconds = 1209600 # 14 days, the most SQS keeps: time to redrive
}

resource "aws_sqs_queue" "gps" {
  name                       = "${local.name}-gps-positions"
  kms_master_key_id          = aws_kms_key.main.arn
  message_retention_seconds  = var.gps_queue_retention_seconds
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.gps_dlq.arn
    maxReceiveCount     = var.gps_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "gps_dlq" {
  queue_url = aws_sqs_queue.gps_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.gps.arn]
  })
}

resource "aws_sns_topic" "gps" {
  name              = "${local.name}-gps-positions"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "gps" {
  topic_arn            = aws_sns_topic.gps.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.gps.arn
  raw_message_delivery = var.gps_raw_message_delivery
}

# Only the GPS topic may send to the queue (through SNS); the job reads it with its role.
data "aws_iam_policy_document" "gps_queue" {
  statement {
    sid       = "TopicDelivers"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.gps.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.gps.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "gps" {
  queue_url = aws_sqs_queue.gps.id
  policy    = data.aws_iam_policy_document.gps_queue.json
}

# Two alarms on the queues, the same but for what they watch.
locals {
  gps_alarms = {
    gps-dead-letters = {
      description = "GPS messages reached the dead-letter queue: a run kept failing on them. Read them, fix the cause, and redrive them to the GPS queue."
      metric      = "ApproximateNumberOfMessagesVisible"
      queue       = aws_sqs_queue.gps_dlq.name
      periods     = 1
      threshold   = 0
    }
    gps-backlog = {
      description = "The oldest GPS position waiting in the queue is older than ${var.gps_max_age_seconds} seconds: the scheduled runs are not draining it."
      metric      = "ApproximateAgeOfOldestMessage"
      queue       = aws_sqs_queue.gps.name
      periods     = 2
      threshold   = var.gps_max_age_seconds
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "gps" {
  for_each            = local.gps_alarms
  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}
