# Where analysts query the lake: a Glue database (sluice publishes the tables and
# partitions) and an Athena workgroup whose results are encrypted in their own prefix.

resource "aws_glue_catalog_database" "lake" {
  name        = replace(local.name, "-", "_")
  description = "Tables of the sluice lake (s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}/), published by sluice after each run"
}

locals {
  # What a role that reads or publishes the lake's tables names in Glue: the catalog, the
  # database and its tables.
  lake_catalog_arns = [
    "arn:${local.partition}:glue:${var.region}:${local.account_id}:catalog",
    aws_glue_catalog_database.lake.arn,
    "arn:${local.partition}:glue:${var.region}:${local.account_id}:table/${aws_glue_catalog_database.lake.name}/*",
  ]
}

resource "aws_glue_data_catalog_encryption_settings" "lake" {
  data_catalog_encryption_settings {
    connection_password_encryption {
      return_connection_password_encrypted = true
      aws_kms_key_id                       = aws_kms_key.main.arn
    }
    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = aws_kms_key.main.arn
    }
  }
}

resource "aws_athena_workgroup" "analysts" {
  name = local.name

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = 1099511627776

    # Engine version 3 reads Delta Lake tables natively (`table_type = DELTA` in Glue):
    # the jobs with `target.format: delta`.
    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/${local.athena_prefix}/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}
