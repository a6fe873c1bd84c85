output "lake" {
  description = "Where sluice writes (SLUICE_LAKE)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}"
}

output "jobs_table" {
  description = "The job rows table (SLUICE_JOBS=dynamodb://<this>); `sluice jobs push jobs/ --jobs dynamodb://<this>` seeds it."
  value       = aws_dynamodb_table.jobs.name
}

output "state_table" {
  description = "The state table (SLUICE_STATE=dynamodb://<this>)."
  value       = aws_dynamodb_table.state.name
}

output "repository_url" {
  description = "ECR repository the build pushes the image to."
  value       = aws_ecr_repository.sluice.repository_url
}

output "state_machine_arn" {
  description = "The state machine that runs the jobs (SLUICE_STATE_MACHINE): `sluice executions start --job ID` runs jobs, `sluice executions show NAME` says what each did."
  value       = aws_sfn_state_machine.run_jobs.arn
}

output "operator_env" {
  description = "The environment of an engineer's `sluice` against this deployment: eval \"$(terraform output -raw operator_env)\"."
  value = join("\n", [
    "export SLUICE_STATE_MACHINE=${aws_sfn_state_machine.run_jobs.arn}",
    "export SLUICE_JOBS=dynamodb://${aws_dynamodb_table.jobs.name}",
    "export SLUICE_STATE=dynamodb://${aws_dynamodb_table.state.name}",
    "export SLUICE_LAKE=s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}",
    "export SLUICE_CATALOG=glue://${aws_glue_catalog_database.lake.name}",
    "export AWS_REGION=${var.region}",
  ])
}

output "operator_policy_arn" {
  description = "The managed policy `sluice executions` needs (start, list, describe, history on this state machine): attach it to the engineers' role."
  value       = aws_iam_policy.operators.arn
}

output "operator_policy_json" {
  description = "The same policy as a document, for roles managed elsewhere."
  value       = data.aws_iam_policy_document.operators.json
}

output "alert_topic_arn" {
  description = "SNS topic of job failure alerts: subscribe your endpoints."
  value       = aws_sns_topic.alerts.arn
}

output "onprem_db_secret_arn" {
  description = "Secret to fill with the on-premise database credentials (RDS JSON shape)."
  value       = aws_secretsmanager_secret.onprem_db.arn
}

output "vpn_tunnel_addresses" {
  description = "AWS endpoints of the two VPN tunnels, for the on-premise VPN device."
  value       = [aws_vpn_connection.onprem.tunnel1_address, aws_vpn_connection.onprem.tunnel2_address]
}

output "athena_workgroup" {
  description = "Athena workgroup for analysts."
  value       = aws_athena_workgroup.analysts.name
}

output "glue_database" {
  description = "Glue database of the lake tables."
  value       = aws_glue_catalog_database.lake.name
}

output "gps_topic_arn" {
  description = "SNS topic the trucks' GPS devices publish positions to."
  value       = aws_sns_topic.gps.arn
}

output "gps_queue_url" {
  description = "The GPS queue (the queue_url of the gps connection in connections.yaml)."
  value       = aws_sqs_queue.gps.id
}

output "gps_dead_letter_queue_url" {
  description = "Where GPS messages that keep failing wait for a redrive."
  value       = aws_sqs_queue.gps_dlq.id
}

output "bank_sftp_secret_name" {
  description = "The secret of the supplier's SFTP login (connection bank): put {BANK_SFTP_HOST, BANK_SFTP_USER, BANK_SFTP_PASSWORD} in it."
  value       = aws_secretsmanager_secret.bank_sftp.name
}

output "tags_api_secret_name" {
  description = "The secret of the tag provider's API client (connection tags): put {TAGS_API_URL, TAGS_CLIENT_ID, TAGS_CLIENT_SECRET} in it."
  value       = aws_secretsmanager_secret.tags_api.name
}

output "serve_load_balancer_dns" {
  description = "The lake's SQL API (with serve_enabled): point the certificate's host name at it; HTTPS on 443, Flight SQL on serve_flight_port."
  value       = one(aws_lb.serve[*].dns_name)
}

output "serve_keys_secret_name" {
  description = "The secret of sluice serve's API keys (with serve_enabled): put a YAML list of {name, sha256, tables} in it; the tasks read it when they start."
  value       = one(aws_secretsmanager_secret.serve_keys[*].name)
}

output "collect_load_balancer_dns" {
  description = "The event collector (with collect_enabled): point the certificate's host name at it; HTTPS on 443."
  value       = one(aws_lb.collect[*].dns_name)
}

output "collect_keys_secret_name" {
  description = "The secret of sluice collect's write keys (with collect_enabled): put a YAML list of {name, sha256, rate_per_second} in it; the tasks read it when they start."
  value       = one(aws_secretsmanager_secret.collect_keys[*].name)
}

output "collect_queue_urls" {
  description = "The collector's queues by table (with collect_enabled): the queue_url of the connections collector_events, collector_aliases and collector_profiles in the deployed connections.yaml."
  value       = { for table, queue in aws_sqs_queue.collect : table => queue.id }
}

output "console_load_balancer_dns" {
  description = "The operators' console (with console_enabled): point the certificate's host name at it; HTTPS on 443 from console_allowed_cidrs."
  value       = one(aws_lb.console[*].dns_name)
}

output "console_keys_secret_name" {
  description = "The secret to fill with the console's keys: a YAML list of {name, sha256, role}."
  value       = one(aws_secretsmanager_secret.console_keys[*].name)
}
