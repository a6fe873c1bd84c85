# The operators' console (`sluice console`), made with console_enabled: an ECS Fargate
# service in the private subnets behind its own internal Application Load Balancer —
# HTTPS on 443 — reachable only from console_allowed_cidrs (the operators' networks,
# over the VPN or a peered VPC). Its role reads the job rows and the state (DynamoDB),
# the lake (S3) and the catalog (Glue), and may start executions of the state machine
# ("run now") — nothing else: a rewind from the console is refused on AWS (it would
# change state and files; operators rewind with `sluice state rewind`). The console's
# keys are a secret the operators fill (a YAML list of {name, sha256, role}); no key is
# in the state.

locals {
  console      = var.console_enabled ? 1 : 0
  console_http = 8090
  console_name = "${local.name}-console"
}

resource "aws_secretsmanager_secret" "console_keys" {
  #checkov:skip=CKV2_AWS_57:console keys belong to operators; rotating one is issuing a new key and removing the old entry
  count       = local.console
  name        = "${local.name}/console-keys"
  description = "sluice console's keys: a YAML list of {name, sha256, role} (role reader or operator; the SHA-256 of each key, never the key)"
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_security_group" "console_lb" {
  count       = local.console
  name        = "${local.console_name}-lb"
  description = "sluice console load balancer: HTTPS from the operators only, out to the console tasks only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.console_name}-lb" }
}

resource "aws_vpc_security_group_ingress_rule" "console_lb_from_operators" {
  for_each          = var.console_enabled ? toset(var.console_allowed_cidrs) : toset([])
  security_group_id = aws_security_group.console_lb[0].id
  description       = "operators' browsers on HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "console_lb_to_service" {
  count                        = local.console
  security_group_id            = aws_security_group.console_lb[0].id
  description                  = "the console tasks' HTTP port"
  referenced_security_group_id = aws_security_group.console[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.console_http
  to_port                      = local.console_http
}

resource "aws_security_group" "console" {
  count       = local.console
  name        = local.console_name
  description = "sluice console tasks: from their load balancer only, out to the AWS endpoints only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = local.console_name }
}

resource "aws_vpc_security_group_ingress_rule" "console_from_lb" {
  count                        = local.console
  security_group_id            = aws_security_group.console[0].id
  description                  = "the console's load balancer"
  referenced_security_group_id = aws_security_group.console_lb[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.console_http
  to_port                      = local.console_http
}

resource "aws_vpc_security_group_egress_rule" "console_to_endpoints" {
  count                        = local.console
  security_group_id            = aws_security_group.console[0].id
  description                  = "HTTPS to the interface endpoints (ECR, logs, secrets, Glue, Step Functions)"
  referenced_security_group_id = aws_security_group.endpoints.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "console_to_gateways" {
  for_each          = var.console_enabled ? { s3 = aws_vpc_endpoint.s3.prefix_list_id, dynamodb = aws_vpc_endpoint.dynamodb.prefix_list_id } : {}
  security_group_id = aws_security_group.console[0].id
  description       = "HTTPS to ${each.key} through its gateway endpoint"
  prefix_list_id    = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_console" {
  count                        = local.console
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the console tasks"
  referenced_security_group_id = aws_security_group.console[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

# --- The load balancer: internal, HTTPS only, access logs, invalid headers dropped ---

resource "aws_lb" "console" {
  #checkov:skip=CKV2_AWS_28:an internal load balancer reached from the operators' networks only; every page needs a key
  count                      = local.console
  name                       = local.console_name
  load_balancer_type         = "application"
  internal                   = true
  subnets                    = aws_subnet.private[*].id
  security_groups            = [aws_security_group.console_lb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb/console"
    enabled = true
  }
}

resource "aws_lb_target_group" "console" {
  count       = local.console
  name        = local.console_name
  vpc_id      = aws_vpc.main.id
  target_type = "ip"
  protocol    = "HTTP"
  port        = local.console_http

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  deregistration_delay = 15
}

resource "aws_lb_listener" "console" {
  count             = local.console
  load_balancer_arn = aws_lb.console[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.console_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.console[0].arn
  }
}

# --- The service: one task (sessions live in it) ---

resource "aws_cloudwatch_log_group" "console" {
  count             = local.console
  name              = "/ecs/${local.console_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_ecs_task_definition" "console" {
  count                    = local.console
  family                   = local.console_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.console[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = "console"
    image                  = "${aws_ecr_repository.sluice.repository_url}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }]
    command = [
      "console", "--listen", "0.0.0.0:${local.console_http}", "--secure-cookie",
      "--schedule", var.schedule_expression, "--query-memory", "128MiB",
    ]
    stopTimeout  = 20
    portMappings = [{ containerPort = local.console_http, protocol = "tcp" }]
    environment = [
      { name = "TMPDIR", value = "/scratch" },
      { name = "SLUICE_JOBS", value = "dynamodb://${aws_dynamodb_table.jobs.name}" },
      { name = "SLUICE_STATE", value = "dynamodb://${aws_dynamodb_table.state.name}" },
      { name = "SLUICE_LAKE", value = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}" },
      { name = "SLUICE_CATALOG", value = "glue://${aws_glue_catalog_database.lake.name}" },
      { name = "SLUICE_STATE_MACHINE", value = aws_sfn_state_machine.run_jobs.arn },
      { name = "SLUICE_CONSOLE_KEYS_SECRET", value = aws_secretsmanager_secret.console_keys[0].arn },
      { name = "SLUICE_LOG_FORMAT", value = "json" },
      { name = "AWS_REGION", value = var.region },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.console[0].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "console"
      }
    }
  }])
}

resource "aws_ecs_service" "console" {
  count                             = local.console
  name                              = local.console_name
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.console[0].arn
  desired_count                     = 1
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 30
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.console[0].id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.console[0].arn
    container_name   = "console"
    container_port   = local.console_http
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.console]
}

# --- The role: read jobs, state, lake and catalog; start executions, nothing more ---

resource "aws_iam_role" "console" {
  count              = local.console
  name               = local.console_name
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "console" {
  statement {
    sid       = "ReadJobsAndState"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"]
    resources = [aws_dynamodb_table.jobs.arn, aws_dynamodb_table.state.arn]
  }
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.lake_prefix}/*", local.lake_prefix, "${local.lake_prefix}/"]
    }
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }
  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Keys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = aws_secretsmanager_secret.console_keys[*].arn
  }
  statement {
    sid       = "ReadCatalog"
    actions   = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"]
    resources = local.lake_catalog_arns
  }
  statement {
    sid       = "RunNow"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.run_jobs.arn]
  }
}

resource "aws_iam_role_policy" "console" {
  count  = local.console
  name   = "read-the-lake-and-start-runs"
  role   = aws_iam_role.console[0].id
  policy = data.aws_iam_policy_document.console.json
}
