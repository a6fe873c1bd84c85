# One customer-managed key encrypts the platform's data at rest: the lake, the tables,
# logs, the alert topic, the GPS topic and queues, the image repository, Athena results
# and the database secret. SNS encrypts what it delivers into the GPS queue with it.

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:in a key policy the resource "*" is this key itself; the account administers it through IAM, as AWS recommends
  #checkov:skip=CKV_AWS_356:in a key policy the resource "*" is this key itself
  #checkov:skip=CKV_AWS_109:in a key policy the resource "*" is this key itself; only the account root may manage it
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncrypt"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    # Alerts (CloudWatch alarms, the state machine) and the GPS deliveries (SNS into the
    # encrypted queue).
    sid       = "ServicePublishers"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "states.amazonaws.com", "sns.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${local.name}: data at rest (lake, tables, logs, alerts, images, secrets)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.main.key_id
}
