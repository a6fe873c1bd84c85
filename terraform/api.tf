# The tag provider's REST API (job tag_transactions, a connection of kind http): its
# OAuth2 client in a secret the task reads, an hourly schedule on the feed task, and the
# only way out of the private subnets to the internet — a NAT gateway routed to the
# provider's addresses alone, on 443 — made only when those addresses are given.

resource "aws_secretsmanager_secret" "tags_api" {
  #checkov:skip=CKV2_AWS_57:the OAuth2 client belongs to the tag provider, which AWS cannot rotate; the provider's portal issues a new one and it is put here
  name        = "${local.name}/tags-api"
  description = "The tag provider's API: {\"TAGS_API_URL\", \"TAGS_CLIENT_ID\", \"TAGS_CLIENT_SECRET\"} (the `$${KEY}` placeholders of connection tags, whose `secret` names this)"
  kms_key_id  = aws_kms_key.main.arn
}

locals {
  # The NAT gateway serves every partner outside: the tag provider's API and the
  # supplier's SFTP server (bank.tf).
  partner_egress = length(var.partner_api_cidrs) + length(var.bank_sftp_cidrs) > 0
  # The internet gateway and the public route table serve the NAT gateway and the SQL
  # API's load balancer (serve.tf).
  internet = local.partner_egress || var.serve_enabled
}

resource "aws_subnet" "public" {
  count                   = local.partner_egress ? 1 : 0
  vpc_id                  = aws_vpc.main.id
  cidr_block              = var.public_subnet_cidr
  availability_zone       = var.availability_zones[0]
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.name}-public-nat" }
}

resource "aws_internet_gateway" "main" {
  count  = local.internet ? 1 : 0
  vpc_id = aws_vpc.main.id
  tags   = { Name = local.name }
}

resource "aws_route_table" "public" {
  count  = local.internet ? 1 : 0
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${local.name}-public" }

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main[0].id
  }
}

resource "aws_route_table_association" "public" {
  count          = local.partner_egress ? 1 : 0
  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count  = local.partner_egress ? 1 : 0
  domain = "vpc"
  tags   = { Name = "${local.name}-nat" }
}

resource "aws_nat_gateway" "partner" {
  count         = local.partner_egress ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = "${local.name}-partner-api" }
  depends_on    = [aws_internet_gateway.main]
}

# Only the provider's addresses go through the NAT gateway; nothing else has a route out.
resource "aws_route" "partner_api" {
  for_each               = toset(var.partner_api_cidrs)
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = each.value
  nat_gateway_id         = aws_nat_gateway.partner[0].id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_partner_api" {
  for_each          = toset(var.partner_api_cidrs)
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the tag provider's API"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
