# Three buckets: artifacts (results, traces, screenshots, reports of runs),
# sources (zipped suites that CI uploads for runs of type "s3") and logs
# (S3 server access logs of the other two, and the load balancer's access
# logs). All three are private, TLS-only and owner-enforced. The first two
# share every setting but their lifecycle rule and are made by
# modules/data-bucket; the logs bucket differs in encryption and policy and
# is declared here.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  alb_log_prefix = "alb"

  # Regions opened before August 2022 deliver load balancer logs from a
  # regional Elastic Load Balancing account; later regions deliver them
  # from a service principal. The bucket policy names both where both can
  # apply.
  regions_with_elb_log_account = [
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ca-central-1", "cn-north-1",
    "cn-northwest-1", "eu-central-1", "eu-north-1", "eu-south-1", "eu-west-1",
    "eu-west-2", "eu-west-3", "me-south-1", "sa-east-1", "us-east-1",
    "us-east-2", "us-gov-east-1", "us-gov-west-1", "us-west-1", "us-west-2",
  ]
  has_elb_log_account = contains(local.regions_with_elb_log_account, data.aws_region.current.region)
}

data "aws_elb_service_account" "current" {
  count = local.has_elb_log_account ? 1 : 0
}

################################################################################
# Artifacts and sources
################################################################################

# Artifact keys are unique per run, so versions only ever hold objects that
# were deleted early; they are kept briefly as an undo and then expire.
module "artifacts" {
  source = "./modules/data-bucket"

  bucket_prefix          = "${var.name}-artifacts-"
  kms_key_arn            = var.kms_key_arn
  access_log_bucket_name = aws_s3_bucket.logs.id
  access_log_prefix      = "s3/artifacts/"
  force_destroy          = var.force_destroy

  lifecycle_rule_id                      = "expire-artifacts"
  expiration_days                        = var.artifact_expiration_days
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days

  tags = merge(var.tags, { "traceloom:bucket" = "artifacts" })
}

# CI overwrites the same key (e.g. suites/app.zip) on every deploy; the
# versions let an earlier run be traced back to the exact suite it ran.
module "sources" {
  source = "./modules/data-bucket"

  bucket_prefix          = "${var.name}-sources-"
  kms_key_arn            = var.kms_key_arn
  access_log_bucket_name = aws_s3_bucket.logs.id
  access_log_prefix      = "s3/sources/"
  force_destroy          = var.force_destroy

  # The current version of a suite never expires: a suite that CI has not
  # uploaded for a while must still be there for the next scheduled run.
  lifecycle_rule_id                      = "expire-old-suite-versions"
  expiration_days                        = null
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days

  tags = merge(var.tags, { "traceloom:bucket" = "sources" })
}

################################################################################
# Logs
################################################################################

# Not a data-bucket: load balancers deliver only to buckets encrypted with
# S3-managed keys, this bucket keeps no access logs of its own, and its
# policy lets the log delivery services write to it.
resource "aws_s3_bucket" "logs" {
  bucket_prefix = "${var.name}-logs-"
  force_destroy = var.force_destroy

  tags = merge(var.tags, { "traceloom:bucket" = "logs" })
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket = aws_s3_bucket.logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Load balancer access logs can only be delivered to a bucket encrypted
# with S3-managed keys, so this bucket cannot use the KMS key.
resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [module.artifacts.arn, module.sources.arn]
    }
  }

  statement {
    sid       = "LoadBalancerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/${local.alb_log_prefix}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = data.aws_elb_service_account.current

    content {
      sid       = "LoadBalancerAccessLogsRegionalAccount"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs.arn}/${local.alb_log_prefix}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

      principals {
        type        = "AWS"
        identifiers = [statement.value.arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

################################################################################
# Earlier addresses
################################################################################

# The artifacts and sources buckets were declared in this file before they
# moved into modules/data-bucket. These blocks let an existing deployment
# take the new addresses in place; without them Terraform would plan to
# destroy both buckets and create new ones under new names.
moved {
  from = aws_s3_bucket.artifacts
  to   = module.artifacts.aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_public_access_block.artifacts
  to   = module.artifacts.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_ownership_controls.artifacts
  to   = module.artifacts.aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.artifacts
  to   = module.artifacts.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_versioning.artifacts
  to   = module.artifacts.aws_s3_bucket_versioning.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.artifacts
  to   = module.artifacts.aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_logging.artifacts
  to   = module.artifacts.aws_s3_bucket_logging.this
}

moved {
  from = aws_s3_bucket_policy.artifacts
  to   = module.artifacts.aws_s3_bucket_policy.this
}

moved {
  from = aws_s3_bucket.sources
  to   = module.sources.aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_public_access_block.sources
  to   = module.sources.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_ownership_controls.sources
  to   = module.sources.aws_s3_bucket_ownership_controls.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.sources
  to   = module.sources.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_versioning.sources
  to   = module.sources.aws_s3_bucket_versioning.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.sources
  to   = module.sources.aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_logging.sources
  to   = module.sources.aws_s3_bucket_logging.this
}

moved {
  from = aws_s3_bucket_policy.sources
  to   = module.sources.aws_s3_bucket_policy.this
}
