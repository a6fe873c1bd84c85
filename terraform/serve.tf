# The lake's SQL API (`sluice serve`), made with serve_enabled: an ECS Fargate service in
# the private subnets behind an internet-facing Application Load Balancer — HTTPS on 443
# for the HTTP API, and HTTPS (gRPC) on serve_flight_port for Arrow Flight SQL —, open to
# serve_allowed_cidrs only. Its role reads the lake and the catalog and runs Athena queries
# in the analysts' workgroup; it writes nothing but Athena's results. The API keys are a
# secret the operators fill (a YAML list of {name, sha256, tables}); no key is in the
# state.

locals {
  serve       = var.serve_enabled ? 1 : 0
  serve_http  = 8080
  serve_grpc  = 50051
  serve_name  = "${local.name}-serve"
  serve_ports = { http = local.serve_http, flight = local.serve_grpc }
  # Each query's memory pool: what the task has beyond a third kept for the server
  # itself, shared by the queries that may run at once.
  serve_query_memory_mib = floor(var.serve_memory * 2 / 3 / var.serve_max_concurrent)
  # How long a stopping task lets requests in flight finish (sluice serve --drain).
  serve_drain_seconds = 20
}

resource "aws_secretsmanager_secret" "serve_keys" {
  #checkov:skip=CKV2_AWS_57:API keys are issued to third parties; rotating one is issuing a new key and removing the old entry, which the operators do
  count       = local.serve
  name        = "${local.name}/serve-keys"
  description = "sluice serve's API keys: a YAML list of {name, sha256, tables} (the SHA-256 of each key, never the key)"
  kms_key_id  = aws_kms_key.main.arn
}

# --- Network: two public subnets for the load balancer, the service's security groups ---

resource "aws_subnet" "serve_public" {
  count                   = var.serve_enabled ? 2 : 0
  vpc_id                  = aws_vpc.main.id
  cidr_block              = var.serve_public_subnet_cidrs[count.index]
  availability_zone       = var.availability_zones[count.index]
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.serve_name}-public-${count.index}" }
}

resource "aws_route_table_association" "serve_public" {
  count          = var.serve_enabled ? 2 : 0
  subnet_id      = aws_subnet.serve_public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_security_group" "serve_lb" {
  count       = local.serve
  name        = "${local.serve_name}-lb"
  description = "sluice serve load balancer: HTTPS and Flight SQL from the allowed clients, out to the service only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.serve_name}-lb" }
}

resource "aws_vpc_security_group_ingress_rule" "serve_lb_from_clients" {
  for_each = var.serve_enabled ? {
    for pair in setproduct(var.serve_allowed_cidrs, [443, var.serve_flight_port]) : "${pair[0]}-${pair[1]}" => pair
  } : {}
  security_group_id = aws_security_group.serve_lb[0].id
  description       = "clients of the lake's SQL API on ${each.value[1]}"
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "serve_lb_to_service" {
  for_each                     = var.serve_enabled ? local.serve_ports : {}
  security_group_id            = aws_security_group.serve_lb[0].id
  description                  = "the serve tasks' ${each.key} port"
  referenced_security_group_id = aws_security_group.serve[0].id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_security_group" "serve" {
  count       = local.serve
  name        = local.serve_name
  description = "sluice serve tasks: from the load balancer only, out to the AWS endpoints only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = local.serve_name }
}

resource "aws_vpc_security_group_ingress_rule" "serve_from_lb" {
  for_each                     = var.serve_enabled ? local.serve_ports : {}
  security_group_id            = aws_security_group.serve[0].id
  description                  = "the load balancer, ${each.key}"
  referenced_security_group_id = aws_security_group.serve_lb[0].id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "serve_to_endpoints" {
  count                        = local.serve
  security_group_id            = aws_security_group.serve[0].id
  description                  = "HTTPS to the interface endpoints (ECR, logs, secrets, Glue, Athena)"
  referenced_security_group_id = aws_security_group.endpoints.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "serve_to_s3" {
  count             = local.serve
  security_group_id = aws_security_group.serve[0].id
  description       = "HTTPS to S3 (the lake) through its gateway endpoint"
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_serve" {
  count                        = local.serve
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the serve tasks"
  referenced_security_group_id = aws_security_group.serve[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

# --- The load balancer: HTTPS only, access logs, invalid headers dropped ---

resource "aws_lb" "serve" {
  #checkov:skip=CKV2_AWS_28:a WAF web ACL is the account's choice (its rules and cost); the API authenticates every query, bounds each one and refuses the rest
  count                      = local.serve
  name                       = local.serve_name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.serve_public[*].id
  security_groups            = [aws_security_group.serve_lb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = 120

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb/serve"
    enabled = true
  }
}

resource "aws_lb_target_group" "serve" {
  for_each         = var.serve_enabled ? local.serve_ports : {}
  name             = "${local.serve_name}-${each.key}"
  vpc_id           = aws_vpc.main.id
  target_type      = "ip"
  protocol         = "HTTP"
  protocol_version = each.key == "flight" ? "GRPC" : "HTTP1"
  port             = each.value

  # HTTP: /health answers while the server runs. gRPC: the load balancer's own probe
  # path, which a gRPC server answers UNIMPLEMENTED (12) while it runs.
  health_check {
    path                = each.key == "flight" ? "/AWS.ALB/healthcheck" : "/health"
    matcher             = each.key == "flight" ? "12" : "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  deregistration_delay = 35
}

resource "aws_lb_listener" "serve" {
  for_each          = var.serve_enabled ? { http = 443, flight = var.serve_flight_port } : {}
  load_balancer_arn = aws_lb.serve[0].arn
  port              = each.value
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.serve_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.serve[each.key].arn
  }
}

# --- The service ---

resource "aws_cloudwatch_log_group" "serve" {
  count             = local.serve
  name              = "/ecs/${local.serve_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_ecs_task_definition" "serve" {
  count                    = local.serve
  family                   = local.serve_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.serve_cpu
  memory                   = var.serve_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.serve[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = "serve"
    image                  = "${aws_ecr_repository.sluice.repository_url}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }]
    command = concat(
      ["serve", "--listen", "0.0.0.0:${local.serve_http}", "--flight-listen", "0.0.0.0:${local.serve_grpc}",
        "--engine", var.serve_engine, "--max-concurrent", tostring(var.serve_max_concurrent),
        "--max-concurrent-per-key", tostring(var.serve_max_concurrent_per_key),
      "--query-memory", "${local.serve_query_memory_mib}MiB", "--drain", "${local.serve_drain_seconds}s"],
      [for origin in var.serve_cors_origins : "--cors-origin=${origin}"],
    )
    # SIGTERM: requests in flight get the drain, then the task exits before ECS's kill.
    stopTimeout = local.serve_drain_seconds + 10
    portMappings = [
      { containerPort = local.serve_http, protocol = "tcp" },
      { containerPort = local.serve_grpc, protocol = "tcp" },
    ]
    environment = [
      { name = "TMPDIR", value = "/scratch" },
      { name = "SLUICE_LAKE", value = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}" },
      { name = "SLUICE_SERVE_KEYS_SECRET", value = aws_secretsmanager_secret.serve_keys[0].arn },
      { name = "SLUICE_ATHENA_WORKGROUP", value = aws_athena_workgroup.analysts.name },
      { name = "SLUICE_ATHENA_DATABASE", value = aws_glue_catalog_database.lake.name },
      { name = "SLUICE_LOG_FORMAT", value = "json" },
      { name = "AWS_REGION", value = var.region },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.serve[0].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "serve"
      }
    }
  }])
}

resource "aws_ecs_service" "serve" {
  count                             = local.serve
  name                              = local.serve_name
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.serve[0].arn
  desired_count                     = var.serve_min_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 30
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.serve[0].id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = local.serve_ports
    content {
      target_group_arn = aws_lb_target_group.serve[load_balancer.key].arn
      container_name   = "serve"
      container_port   = load_balancer.value
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count] # the autoscaling below owns it
  }

  depends_on = [aws_lb_listener.serve]
}

# Scales on requests per task: the queries are bounded, so requests are the load.
resource "aws_appautoscaling_target" "serve" {
  count              = local.serve
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.serve[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.serve_min_count
  max_capacity       = var.serve_max_count
}

resource "aws_appautoscaling_policy" "serve" {
  count              = local.serve
  name               = "${local.serve_name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.serve[0].service_namespace
  resource_id        = aws_appautoscaling_target.serve[0].resource_id
  scalable_dimension = aws_appautoscaling_target.serve[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.serve_requests_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.serve[0].arn_suffix}/${aws_lb_target_group.serve["http"].arn_suffix}"
    }
  }
}

# --- The service's role: read the lake and the catalog, query through Athena ---

resource "aws_iam_role" "serve" {
  count              = local.serve
  name               = local.serve_name
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "serve" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.lake_prefix}/*", "${local.athena_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.lake_prefix}/*"]
  }
  statement {
    # Athena writes a query's results under its prefix as the caller and reads them back.
    sid       = "AthenaResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:GetBucketLocation"]
    resources = ["${aws_s3_bucket.lake.arn}/${local.athena_prefix}/*", aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Keys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = aws_secretsmanager_secret.serve_keys[*].arn
  }
  statement {
    sid     = "ReadCatalog"
    actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"]
    resources = local.lake_catalog_arns
  }
  statement {
    sid       = "Query"
    actions   = ["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults", "athena:StopQueryExecution"]
    resources = [aws_athena_workgroup.analysts.arn]
  }
}

resource "aws_iam_role_policy" "serve" {
  count  = local.serve
  name   = "read-the-lake"
  role   = aws_iam_role.serve[0].id
  policy = data.aws_iam_policy_document.serve.json
}
