# The event collector (`sluice collect`), made with collect_enabled: an ECS Fargate service
# in the private subnets behind an internet-facing Application Load Balancer (HTTPS on
# 443, the certificate a variable; health checks on /health), autoscaled on requests per
# task. A task answers 2xx only once SendMessageBatch has put the events in their table's
# SQS queue (a task's disk does not outlive it); the jobs collect_events, collect_aliases
# and collect_profiles drain the queues into the lake on their schedule, exactly once.
# The write keys are a secret the operators fill; the role may send to the three queues
# and read that secret, nothing else. Metrics: the tasks print CloudWatch Embedded Metric
# Format lines (requests, events accepted, rejected by reason, latency, buffer), which
# the log driver turns into metrics; alarms watch the queues' dead letters and backlog.

locals {
  collect        = var.collect_enabled ? 1 : 0
  collect_port   = 8080
  collect_name   = "${local.name}-collect"
  collect_tables = var.collect_enabled ? toset(["events", "aliases", "profiles"]) : toset([])
}

resource "aws_secretsmanager_secret" "collect_keys" {
  #checkov:skip=CKV2_AWS_57:write keys are issued to apps and websites; rotating one is issuing a new key and removing the old entry, which the operators do
  count       = local.collect
  name        = "${local.name}/collect-keys"
  description = "sluice collect's write keys: a YAML list of {name, sha256, rate_per_second} (the SHA-256 of each key, never the key)"
  kms_key_id  = aws_kms_key.main.arn
}

# --- The queues: one per table, each with its dead-letter queue ---

resource "aws_sqs_queue" "collect_dlq" {
  for_each                  = local.collect_tables
  name                      = "${local.collect_name}-${each.key}-dlq"
  kms_master_key_id         = aws_kms_key.main.arn
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "collect" {
  for_each                   = local.collect_tables
  name                       = "${local.collect_name}-${each.key}"
  kms_master_key_id          = aws_kms_key.main.arn
  message_retention_seconds  = 1209600 # 14 days: the lake may be down that long and nothing is lost
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.collect_dlq[each.key].arn
    maxReceiveCount     = 10
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "collect_dlq" {
  for_each  = local.collect_tables
  queue_url = aws_sqs_queue.collect_dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.collect[each.key].arn]
  })
}

resource "aws_cloudwatch_metric_alarm" "collect_queues" {
  for_each = var.collect_enabled ? {
    for pair in setproduct(tolist(local.collect_tables), ["dead-letters", "backlog"]) : "${pair[0]}-${pair[1]}" => pair
  } : {}
  alarm_name = "${local.collect_name}-${each.key}"
  alarm_description = (each.value[1] == "dead-letters"
    ? "Collected ${each.value[0]} reached the dead-letter queue: a load kept failing on them. Read them, fix the cause, redrive them."
  : "The oldest collected ${each.value[0]} message is older than an hour: the scheduled loads are not draining the queue.")
  namespace           = "AWS/SQS"
  metric_name         = each.value[1] == "dead-letters" ? "ApproximateNumberOfMessagesVisible" : "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value[1] == "dead-letters" ? aws_sqs_queue.collect_dlq[each.value[0]].name : aws_sqs_queue.collect[each.value[0]].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value[1] == "dead-letters" ? 0 : 3600
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

# --- Network: two public subnets for the load balancer, the service's security groups ---

resource "aws_subnet" "collect_public" {
  count                   = var.collect_enabled ? 2 : 0
  vpc_id                  = aws_vpc.main.id
  cidr_block              = var.collect_public_subnet_cidrs[count.index]
  availability_zone       = var.availability_zones[count.index]
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.collect_name}-public-${count.index}" }
}

resource "aws_route_table_association" "collect_public" {
  count          = var.collect_enabled ? 2 : 0
  subnet_id      = aws_subnet.collect_public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_security_group" "collect_lb" {
  count       = local.collect
  name        = "${local.collect_name}-lb"
  description = "sluice collect load balancer: HTTPS from the apps and websites, out to the service only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.collect_name}-lb" }
}

resource "aws_vpc_security_group_ingress_rule" "collect_lb_from_clients" {
  for_each          = var.collect_enabled ? toset(var.collect_allowed_cidrs) : toset([])
  security_group_id = aws_security_group.collect_lb[0].id
  description       = "apps and websites sending events"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "collect_lb_to_service" {
  count                        = local.collect
  security_group_id            = aws_security_group.collect_lb[0].id
  description                  = "the collect tasks' port"
  referenced_security_group_id = aws_security_group.collect[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.collect_port
  to_port                      = local.collect_port
}

resource "aws_security_group" "collect" {
  count       = local.collect
  name        = local.collect_name
  description = "sluice collect tasks: from the load balancer only, out to the AWS endpoints only"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = local.collect_name }
}

resource "aws_vpc_security_group_ingress_rule" "collect_from_lb" {
  count                        = local.collect
  security_group_id            = aws_security_group.collect[0].id
  description                  = "the load balancer"
  referenced_security_group_id = aws_security_group.collect_lb[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.collect_port
  to_port                      = local.collect_port
}

resource "aws_vpc_security_group_egress_rule" "collect_to_endpoints" {
  count                        = local.collect
  security_group_id            = aws_security_group.collect[0].id
  description                  = "HTTPS to the interface endpoints (ECR, logs, secrets, SQS, DynamoDB's gateway aside)"
  referenced_security_group_id = aws_security_group.endpoints.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "collect_to_dynamodb" {
  count             = local.collect
  security_group_id = aws_security_group.collect[0].id
  description       = "HTTPS to DynamoDB (its job rows) through its gateway endpoint"
  prefix_list_id    = aws_vpc_endpoint.dynamodb.prefix_list_id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_collect" {
  count                        = local.collect
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the collect tasks"
  referenced_security_group_id = aws_security_group.collect[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

# --- The load balancer: HTTPS only, access logs, invalid headers dropped ---

resource "aws_lb" "collect" {
  #checkov:skip=CKV2_AWS_28:a WAF web ACL is the account's choice (its rules and cost); every request is authenticated by its write key, rate-limited per key and size-bounded
  count                      = local.collect
  name                       = local.collect_name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.collect_public[*].id
  security_groups            = [aws_security_group.collect_lb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = 60

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb/collect"
    enabled = true
  }
}

resource "aws_lb_target_group" "collect" {
  count       = local.collect
  name        = local.collect_name
  vpc_id      = aws_vpc.main.id
  target_type = "ip"
  protocol    = "HTTP"
  port        = local.collect_port

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  # A stopping task finishes its requests (SIGTERM) within this.
  deregistration_delay = 35
}

resource "aws_lb_listener" "collect" {
  count             = local.collect
  load_balancer_arn = aws_lb.collect[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.collect_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.collect[0].arn
  }
}

# --- The service ---

resource "aws_cloudwatch_log_group" "collect" {
  count             = local.collect
  name              = "/ecs/${local.collect_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_ecs_task_definition" "collect" {
  count                    = local.collect
  family                   = local.collect_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.collect_cpu
  memory                   = var.collect_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.collect[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = "collect"
    image                  = "${aws_ecr_repository.sluice.repository_url}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    # The tasks stop with SIGTERM: the requests in flight finish within this.
    stopTimeout = 30
    command = concat(
      ["collect", "--listen", "0.0.0.0:${local.collect_port}", "--trust-forwarded-for",
      "--client-ip", var.collect_client_ip, "--emf-namespace", "sluice"],
      var.collect_rate_limit > 0 ? ["--rate-limit", tostring(var.collect_rate_limit)] : [],
      [for origin in var.collect_cors_origins : "--cors-origin=${origin}"],
    )
    portMappings = [{ containerPort = local.collect_port, protocol = "tcp" }]
    environment = [
      { name = "SLUICE_JOBS", value = "dynamodb://${aws_dynamodb_table.jobs.name}" },
      { name = "SLUICE_COLLECT_KEYS_SECRET", value = aws_secretsmanager_secret.collect_keys[0].arn },
      { name = "SLUICE_LOG_FORMAT", value = "json" },
      { name = "AWS_REGION", value = var.region },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.collect[0].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "collect"
      }
    }
  }])
}

resource "aws_ecs_service" "collect" {
  count                             = local.collect
  name                              = local.collect_name
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.collect[0].arn
  desired_count                     = var.collect_min_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 30
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.collect[0].id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.collect[0].arn
    container_name   = "collect"
    container_port   = local.collect_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count] # the autoscaling below owns it
  }

  depends_on = [aws_lb_listener.collect]
}

resource "aws_appautoscaling_target" "collect" {
  count              = local.collect
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.collect[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.collect_min_count
  max_capacity       = var.collect_max_count
}

resource "aws_appautoscaling_policy" "collect" {
  count              = local.collect
  name               = "${local.collect_name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.collect[0].service_namespace
  resource_id        = aws_appautoscaling_target.collect[0].resource_id
  scalable_dimension = aws_appautoscaling_target.collect[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.collect_requests_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.collect[0].arn_suffix}/${aws_lb_target_group.collect[0].arn_suffix}"
    }
  }
}

# --- The service's role: send to the three queues, read its keys and job rows ---

resource "aws_iam_role" "collect" {
  count              = local.collect
  name               = local.collect_name
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

data "aws_iam_policy_document" "collect" {
  statement {
    sid       = "SendEvents"
    actions   = ["sqs:SendMessage"]
    resources = [for q in aws_sqs_queue.collect : q.arn]
  }
  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Keys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = aws_secretsmanager_secret.collect_keys[*].arn
  }
  statement {
    sid       = "JobRows"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [aws_dynamodb_table.jobs.arn]
  }
}

resource "aws_iam_role_policy" "collect" {
  count  = local.collect
  name   = "send-events"
  role   = aws_iam_role.collect[0].id
  policy = data.aws_iam_policy_document.collect.json
}
