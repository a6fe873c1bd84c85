# The two tables sluice reads and writes. Keys exactly as `sluice init` creates them
# (engine/src/aws/dynamo.rs): job rows `item_type` + `id`; state `job` + `sk`.
# Job rows are seeded from jobs/ by the build (`sluice jobs push jobs/`).

resource "aws_dynamodb_table" "jobs" {
  name         = "${local.name}-jobs"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "item_type"
  range_key    = "id"

  attribute {
    name = "item_type"
    type = "S"
  }
  attribute {
    name = "id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
  deletion_protection_enabled = true
}

resource "aws_dynamodb_table" "state" {
  name         = "${local.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "job"
  range_key    = "sk"

  attribute {
    name = "job"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  # Abandoned lease items go away; expiry itself is decided by the lease's expires_at.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
  deletion_protection_enabled = true
}
