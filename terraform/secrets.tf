# The on-premise database credentials, in the RDS JSON shape sluice reads
# (`secret: <this name>` in a connection). Terraform creates the secret, not its value:
# the DBA puts it (aws secretsmanager put-secret-value), so no password is in the state.

resource "aws_secretsmanager_secret" "onprem_db" {
  #checkov:skip=CKV2_AWS_57:the password belongs to the on-premise database, which AWS cannot rotate; the DBA rotates it and updates the secret
  name        = "${local.name}/onprem-db"
  description = "On-premise source database: {engine, host, port, username, password, dbname}"
  kms_key_id  = aws_kms_key.main.arn
}
