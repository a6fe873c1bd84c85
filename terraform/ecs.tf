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

resource "aws_ecs_task_definition" "sluice" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = "${aws_ecr_repository.sluice.repository_url}:${var.image_tag}"
    essential              = true
    command                = ["--help"]
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    environment = [
      { name = "SLUICE_JOBS", value = "dynamodb://${aws_dynamodb_table.jobs.name}" },
      { name = "SLUICE_STATE", value = "dynamodb://${aws_dynamodb_table.state.name}" },
      { name = "SLUICE_LAKE", value = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}" },
      { name = "SLUICE_CATALOG", value = "glue://${aws_glue_catalog_database.lake.name}" },
      { name = "SLUICE_METRICS", value = "emf" },
      { name = "SLUICE_LOG_FORMAT", value = "json" },
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
