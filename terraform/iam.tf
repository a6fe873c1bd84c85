# Least privilege: each role gets exactly what its service does.

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- Execution role: ECS pulls the image and writes the log stream ---

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the token API has no resource
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.sluice.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = concat(["${aws_cloudwatch_log_group.tasks.arn}:*"], [for g in aws_cloudwatch_log_group.serve : "${g.arn}:*"])
  }
  statement {
    sid       = "DecryptImageLayers"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- Task role: what sluice itself does ---

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadJobRows"
    actions   = ["dynamodb:Query", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.jobs.arn]
  }
  statement {
    sid       = "State"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.state.arn]
  }
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.lake_prefix}/*"]
    }
  }
  statement {
    sid       = "WriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }
  statement {
    # Encrypt too: the Glue catalog is encrypted with this key, and writing a table or
    # partition in it needs all three.
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    # The GPS feed and the collector's queues: receive, keep hidden while working, delete
    # after the commit.
    sid       = "GpsQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = concat([aws_sqs_queue.gps.arn], [for q in aws_sqs_queue.collect : q.arn])
  }
  statement {
    sid       = "DatabaseCredentials"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.onprem_db.arn, aws_secretsmanager_secret.tags_api.arn, aws_secretsmanager_secret.bank_sftp.arn]
  }
  statement {
    # Each run publishes its tables and partitions; nothing outside the lake's database.
    sid = "Catalog"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:CreateTable",
      "glue:UpdateTable",
      "glue:GetPartitions",
      "glue:BatchCreatePartition",
      "glue:BatchDeletePartition",
    ]
    resources = local.lake_catalog_arns
  }
  statement {
    # The task reports to the execution that started it (its task token), and heartbeats.
    sid       = "ReportToStateMachine"
    actions   = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
    resources = [local.state_machine_arn]
  }
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource; the namespace condition bounds it
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Sluice"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "sluice"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- State machine role: list jobs, run tasks, alert ---

data "aws_iam_policy_document" "assume_states" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "states" {
  name               = "${local.name}-states"
  assume_role_policy = data.aws_iam_policy_document.assume_states.json
}

# Running sluice's tasks on this cluster (the state machine's job runs, the scheduler's
# maintenance tasks): its task definitions only, with its two roles.
data "aws_iam_policy_document" "run_tasks" {
  statement {
    sid       = "RunTasks"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:task-definition/${local.name}*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }
  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
  }
}

data "aws_iam_policy_document" "states" {
  source_policy_documents = [data.aws_iam_policy_document.run_tasks.json]
  statement {
    sid       = "ListJobs"
    actions   = ["dynamodb:Query"]
    resources = [aws_dynamodb_table.jobs.arn]
  }
  statement {
    sid       = "Alert"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid = "ExecutionLogs"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"] # log delivery APIs take no resource
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray APIs take no resource
  }
}

resource "aws_iam_role_policy" "states" {
  #checkov:skip=CKV_AWS_290:log delivery and X-Ray calls take no resource ARN; every other statement names its resources
  #checkov:skip=CKV_AWS_355:the same: "*" only for the resource-less log delivery and X-Ray APIs
  name   = "run-jobs"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states.json
}

# --- Scheduler role: start the state machine, and the maintenance tasks ---

data "aws_iam_policy_document" "assume_scheduler" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler.json
}

data "aws_iam_policy_document" "scheduler" {
  # The Delta tables' maintenance tasks (maintenance.tf).
  source_policy_documents = [data.aws_iam_policy_document.run_tasks.json]
  statement {
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.run_jobs.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "start-run"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# --- Flow logs role ---

data "aws_iam_policy_document" "assume_flow_logs" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${local.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.assume_flow_logs.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

# --- Operators: `sluice executions start / watch / list / show` ---

data "aws_iam_policy_document" "operators" {
  statement {
    sid       = "StartAndList"
    actions   = ["states:StartExecution", "states:ListExecutions", "states:DescribeStateMachine"]
    resources = [local.state_machine_arn]
  }
  statement {
    sid       = "ReadExecutions"
    actions   = ["states:DescribeExecution", "states:GetExecutionHistory"]
    resources = ["${local.state_machine_execution_arn}:*"]
  }
}

resource "aws_iam_policy" "operators" {
  name        = "${local.name}-operators"
  description = "What `sluice executions` needs: start, list, describe and read the history of the run-jobs state machine's executions. Attach it to the engineers' role."
  policy      = data.aws_iam_policy_document.operators.json
}
