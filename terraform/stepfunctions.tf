# The orchestration: stepfunctions/run_jobs.asl.json, filled in here, started by
# EventBridge Scheduler schedules.

resource "aws_cloudwatch_log_group" "states" {
  name              = "/aws/vendedlogs/states/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_sfn_state_machine" "run_jobs" {
  name     = local.state_machine_name
  role_arn = aws_iam_role.states.arn
  type     = "STANDARD"

  definition = templatefile("${path.module}/../stepfunctions/run_jobs.asl.json", {
    jobs_table           = aws_dynamodb_table.jobs.name
    cluster_arn          = aws_ecs_cluster.main.arn
    task_definition      = aws_ecs_task_definition.sluice["default"].family
    container_name       = local.container_name
    subnets              = jsonencode(aws_subnet.private[*].id)
    security_groups      = jsonencode([aws_security_group.tasks.id])
    alert_topic_arn      = aws_sns_topic.alerts.arn
    max_concurrency      = var.max_concurrency
    task_timeout_seconds = var.task_timeout_seconds
    # The task heartbeats four times per HeartbeatSeconds: one lost beat is not a hang.
    heartbeat_seconds      = var.task_heartbeat_seconds
    heartbeat_every        = "${max(1, floor(var.task_heartbeat_seconds / 4))}s"
    retry_interval_seconds = var.job_retry_interval_seconds
    region               = var.region
    log_group_url        = replace(aws_cloudwatch_log_group.tasks.name, "/", "$252F")
    map_processor_config = jsonencode(var.distributed_map ? { Mode = "DISTRIBUTED", ExecutionType = "STANDARD" } : { Mode = "INLINE" })
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }

  encryption_configuration {
    type                              = "CUSTOMER_MANAGED_KMS_KEY"
    kms_key_id                        = aws_kms_key.main.arn
    kms_data_key_reuse_period_seconds = 300
  }
}

# The schedules that start it: every enabled job row hourly (input {}), and each feed on
# its own schedule on the small feed task: the GPS queue every five minutes, the tag
# provider's API hourly (a row-shaped item names the task; the feed rows themselves are
# disabled, so the hourly run leaves them out; if two runs meet anyway, the second exits
# 3, "already running", which the state machine skips).
locals {
  feed_schedules = {
    gps-positions     = { job = "gps_positions", expression = var.gps_schedule_expression, max_age = 300 }
    tag-transactions  = { job = "tag_transactions", expression = var.api_schedule_expression, max_age = 3600 }
    bank-transactions = { job = "bank_transactions", expression = var.bank_schedule_expression, max_age = 6 * 3600 }
  }
  # With collect_enabled: the collector's three queues, each drained by its job.
  collect_schedules = var.collect_enabled ? {
    for table in ["events", "aliases", "profiles"] : "collect-${table}" => {
      job = "collect_${table}", expression = var.collect_schedule_expression, max_age = 300
    }
  } : {}
  schedules = merge(
    { run-jobs = { expression = var.schedule_expression, input = {}, max_age = 3600 } },
    { for name, feed in merge(local.feed_schedules, local.collect_schedules) : name => {
      expression = feed.expression
      max_age    = feed.max_age
      input = { jobs = [{
        id              = { S = feed.job }
        task_definition = { S = aws_ecs_task_definition.sluice["feed"].family }
      }] }
    } },
  )
}

resource "aws_scheduler_schedule" "run_jobs" {
  for_each                     = merge(local.schedules, local.maintenance)
  name                         = "${local.name}-${each.key}"
  schedule_expression          = each.value.expression
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  # The state machine with its input, or (a maintenance schedule, maintenance.tf) one task
  # of the default size with its command.
  target {
    arn      = lookup(each.value, "command", null) == null ? aws_sfn_state_machine.run_jobs.arn : aws_ecs_cluster.main.arn
    role_arn = aws_iam_role.scheduler.arn
    input = (lookup(each.value, "command", null) == null
      ? jsonencode(lookup(each.value, "input", {}))
      : jsonencode({ containerOverrides = [{ name = local.container_name, command = lookup(each.value, "command", []) }] })
    )

    dynamic "ecs_parameters" {
      for_each = lookup(each.value, "command", null) == null ? [] : [1]
      content {
        task_definition_arn = aws_ecs_task_definition.sluice["default"].arn_without_revision
        launch_type         = "FARGATE"

        network_configuration {
          subnets          = aws_subnet.private[*].id
          security_groups  = [aws_security_group.tasks.id]
          assign_public_ip = false
        }
      }
    }

    retry_policy {
      maximum_retry_attempts       = 3
      maximum_event_age_in_seconds = each.value.max_age
    }
  }
}
