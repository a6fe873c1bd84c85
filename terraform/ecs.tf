# The container that runs one job: `sluice run --job ID` (the state machine overrides
# the command). Configuration comes from the environment: the DynamoDB tables, the lake
# prefix, EMF metrics on stdout (turned into CloudWatch metrics by the awslogs driver).

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]
}

resource "aws_cloudwatch_log_group" "tasks" {
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# Two sizes of the same task: the default for tables (a row may name a bigger one), and
# a small one for the feeds' short, frequent runs (a 3,000-message run peaks under
# 128 MiB), which bills a quarter of a vCPU per minute instead of two.
locals {
  task_sizes = {
    default = { family = local.name, cpu = var.task_cpu, memory = var.task_memory }
    feed    = { family = "${local.name}-feed", cpu = var.feed_task_cpu, memory = var.feed_task_memory }
  }
}

resource "aws_ecs_task_definition" "sluice" {
  for_each                 = local.task_sizes
  family                   = each.value.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root file system is read-only: the task's writable scratch space (Fargate's
  # ephemeral storage) is this volume, TMPDIR — where a file feed fetches a remote file
  # before decoding it, and where DataFusion spills.
  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = "${aws_ecr_repository.sluice.repository_url}:${var.image_tag}"
    essential              = true
    command                = ["--help"]
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }]
    environment = [
      { name = "TMPDIR", value = "/scratch" },
      { name = "SLUICE_JOBS", value = "dynamodb://${aws_dynamodb_table.jobs.name}" },
      { name = "SLUICE_STATE", value = "dynamodb://${aws_dynamodb_table.state.name}" },
      { name = "SLUICE_LAKE", value = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}" },
      { name = "SLUICE_CATALOG", value = "glue://${aws_glue_catalog_database.lake.name}" },
      { name = "SLUICE_METRICS", value = "emf" },
      { name = "SLUICE_LOG_FORMAT", value = "json" },
      # The run's memory budget, a promise about its peak RSS: three quarters of the task,
      # the rest the page cache of the files it writes and spills.
      { name = "SLUICE_MEMORY_LIMIT", value = "${floor(each.value.memory * 3 / 4)}MiB" },
      { name = "AWS_REGION", value = var.region },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.tasks.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "job"
      }
    }
  }])
}
