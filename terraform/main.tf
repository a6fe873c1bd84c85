# sluice on AWS: the batch ETL platform around the `sluice` container.
# One file per concern: network.tf (VPC, site-to-site VPN, endpoints), kms.tf, lake.tf
# (S3), dynamodb.tf (job rows, state), ecr.tf, ecs.tf, iam.tf, stepfunctions.tf
# (orchestration and schedule), alerts.tf (SNS, alarms, dashboard), catalog.tf (Glue,
# Athena), secrets.tf (on-prem database credentials), feeds.tf (the GPS topic, queue,
# dead-letter queue, their schedule and alarms), serve.tf (the lake's SQL API behind a
# load balancer, made with serve_enabled).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  name       = var.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Where sluice writes inside the lake bucket; the task role may write nowhere else.
  lake_prefix    = "lake"
  athena_prefix  = "athena-results"
  container_name = "sluice"

  # The state machine's ARNs, known before it exists: the task role (which the task
  # definition, and so the state machine, names) may report only to it.
  state_machine_name          = "${local.name}-run-jobs"
  state_machine_arn           = "arn:${local.partition}:states:${var.region}:${local.account_id}:stateMachine:${local.state_machine_name}"
  state_machine_execution_arn = "arn:${local.partition}:states:${var.region}:${local.account_id}:execution:${local.state_machine_name}"

  tags = merge(var.tags, {
    Application = "sluice"
    ManagedBy   = "terraform"
  })
}
