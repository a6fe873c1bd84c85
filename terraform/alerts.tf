# Alerts: the state machine publishes one message per failed job; alarms watch failed
# executions and the freshness of chosen jobs; a dashboard shows runs and rows.

resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alert_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_metric_alarm" "failed_runs" {
  alarm_name          = "${local.name}-failed-runs"
  alarm_description   = "A scheduled run of the sluice jobs failed (each failed job was also alerted on)."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsFailed"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.run_jobs.arn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "freshness" {
  for_each            = var.freshness_alarms
  alarm_name          = "${local.name}-freshness-${each.key}"
  alarm_description   = "The lake table of job ${each.key} is more than ${each.value} seconds behind its source (WatermarkLagSeconds), or the job stopped reporting."
  namespace           = "Sluice"
  metric_name         = "WatermarkLagSeconds"
  dimensions          = { Job = each.key }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = each.value
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_dashboard" "sluice" {
  dashboard_name = local.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Scheduled runs"
          region = var.region
          stat   = "Sum"
          period = 3600
          metrics = [
            ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", aws_sfn_state_machine.run_jobs.arn],
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", aws_sfn_state_machine.run_jobs.arn],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Rows written per job"
          region  = var.region
          period  = 3600
          metrics = [[{ expression = "SEARCH('{Sluice,Job} MetricName=\"RowsWritten\"', 'Sum', 3600)", id = "rows" }]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Freshness (watermark lag, seconds)"
          region  = var.region
          period  = 3600
          metrics = [[{ expression = "SEARCH('{Sluice,Job} MetricName=\"WatermarkLagSeconds\"', 'Maximum', 3600)", id = "lag" }]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Failed runs and peak memory"
          region = var.region
          period = 3600
          metrics = [
            [{ expression = "SEARCH('{Sluice,Job} MetricName=\"RunFailed\"', 'Sum', 3600)", id = "failed" }],
            [{ expression = "SEARCH('{Sluice,Job} MetricName=\"PeakMemory\"', 'Maximum', 3600)", id = "memory" }],
          ]
        }
      },
    ]
  })
}
