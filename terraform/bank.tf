# The bank's files on the supplier's SFTP server (job bank_transactions, a connection of
# kind sftp): the login in a secret the task reads, a daily schedule on the feed task,
# and a way out to that server alone — the NAT gateway (made with api.tf's) routed to the
# server's addresses, on its SFTP port only — made only when those addresses are given.

resource "aws_secretsmanager_secret" "bank_sftp" {
  #checkov:skip=CKV2_AWS_57:the SFTP login belongs to the supplier, which AWS cannot rotate; the supplier issues a new one and it is put here
  name        = "${local.name}/bank-sftp"
  description = "The supplier's SFTP login: {\"BANK_SFTP_HOST\", \"BANK_SFTP_USER\", \"BANK_SFTP_PASSWORD\"} (the `$${KEY}` placeholders of connection bank, whose `secret` names this)"
  kms_key_id  = aws_kms_key.main.arn
}

# Only the SFTP server's addresses go through the NAT gateway, and only to its port.
resource "aws_route" "bank_sftp" {
  for_each               = toset(var.bank_sftp_cidrs)
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = each.value
  nat_gateway_id         = aws_nat_gateway.partner[0].id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_bank_sftp" {
  for_each          = toset(var.bank_sftp_cidrs)
  security_group_id = aws_security_group.tasks.id
  description       = "SFTP to the supplier's server (the bank's files)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.bank_sftp_port
  to_port           = var.bank_sftp_port
}
