# The control plane's host: one EC2 instance in a private subnet running
# `traceloom serve` under systemd, its state on an encrypted data volume
# that outlives the instance, an HTTPS load balancer in front (optional),
# and the IAM role that lets it launch, tag and terminate runners and
# nothing more.

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_subnet" "host" {
  id = var.host_subnet_id
}

data "aws_ssm_parameter" "host_ami" {
  name = var.host_ami_ssm_parameter_name
}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id

  api_url = var.domain_name != null ? "https://${var.domain_name}" : "https://${aws_lb.this[0].dns_name}"

  # Settings of `traceloom serve`, read from the environment at start.
  environment = merge(
    {
      TRACELOOM_FLEET                = "ec2"
      TRACELOOM_HOST                 = "0.0.0.0"
      TRACELOOM_PORT                 = tostring(var.service_port)
      TRACELOOM_DATA_DIR             = "/var/lib/traceloom"
      TRACELOOM_PUBLIC_URL           = local.api_url
      TRACELOOM_LOG_FORMAT           = "json"
      TRACELOOM_LAUNCH_TEMPLATE_ID   = var.launch_template_id
      TRACELOOM_SUBNET_IDS           = join(",", var.runner_subnet_ids)
      TRACELOOM_INSTANCE_TYPES       = join(",", var.runner_instance_types)
      TRACELOOM_MAX_INSTANCES        = tostring(var.max_instances)
      TRACELOOM_MAX_SERVER_COUNT     = tostring(var.max_instances)
      TRACELOOM_ON_DEMAND_FILL       = tostring(var.allow_on_demand_fill)
      TRACELOOM_DEPLOYMENT_NAME      = var.name
      TRACELOOM_ARTIFACTS_BUCKET     = var.artifacts_bucket_name
      TRACELOOM_SOURCES_BUCKET       = var.sources_bucket_name
      TRACELOOM_RUNNER_AMI_PARAMETER = split(":parameter", var.ami_ssm_parameter_arn)[1]
      AWS_REGION                     = local.region
      AWS_DEFAULT_REGION             = local.region
    },
    var.extra_environment,
  )
}

################################################################################
# Network access
################################################################################

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-controlplane-"
  description = "TraceLoom control plane host"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-controlplane" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  count = var.create_alb ? 1 : 0

  security_group_id            = aws_security_group.this.id
  description                  = "API from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.service_port
  to_port                      = var.service_port
  referenced_security_group_id = aws_security_group.alb[0].id

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "api_direct" {
  for_each = var.create_alb ? toset([]) : toset(var.ingress_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "API from the operator's own front"
  ip_protocol       = "tcp"
  from_port         = var.service_port
  to_port           = var.service_port
  cidr_ipv4         = each.value

  tags = var.tags
}

# AWS APIs, git and package indexes are all reached over HTTPS through the
# NAT gateway (S3 through the gateway endpoint). SSH to runners is opened
# by the runners module, which owns the runner security group.
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.this.id
  description       = "HTTPS to AWS APIs, git hosts and package indexes"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"

  tags = var.tags
}

################################################################################
# IAM
################################################################################

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "Ec2Assume"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "this" {
  # Instances (and their volumes and network interfaces) may only come from
  # TraceLoom's launch template; instance types and subnets are overrides.
  statement {
    sid     = "LaunchFromRunnerTemplateOnly"
    actions = ["ec2:CreateFleet", "ec2:RunInstances"]
    resources = [
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:*",
      "arn:${local.partition}:ec2:${local.region}::image/*",
    ]

    condition {
      test     = "ArnLike"
      variable = "ec2:LaunchTemplate"
      values   = [var.launch_template_arn]
    }
  }

  # Each launch passes its instances' SSH host key and the run's client key
  # in the user data of a template version made for it and deleted right
  # after the CreateFleet call; only the runner template's versions.
  statement {
    sid       = "VersionRunnerTemplateOnly"
    actions   = ["ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplateVersions"]
    resources = [var.launch_template_arn]
  }

  # Tags may be written only as part of the launch itself, and the launch
  # must mark what it creates as TraceLoom's.
  statement {
    sid       = "TagOnlyWhileLaunching"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateFleet", "RunInstances"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/traceloom:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "TerminateManagedRunnersOnly"
    actions   = ["ec2:TerminateInstances"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/traceloom:managed"
      values   = ["true"]
    }
  }

  statement {
    sid       = "PassRunnerRoleToEc2Only"
    actions   = ["iam:PassRole"]
    resources = [var.runner_role_arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # Spot launches need the EC2 Spot service-linked role; it is created on
  # the first launch in an account that does not have it yet.
  statement {
    sid       = "CreateSpotServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["spot.amazonaws.com"]
    }
  }

  # These read-only calls do not support resource-level permissions, so
  # AWS requires "*" for them.
  statement {
    sid = "DescribeFleetState"
    actions = [
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeFleets",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceStatus",
      "ec2:DescribeInstanceTypeOfferings",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstances",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:DescribeLaunchTemplates",
      "ec2:DescribeSpotPriceHistory",
      "ec2:DescribeSubnets",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeOwnFleets"
    actions   = ["ec2:DescribeFleetInstances"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:fleet/*"]
  }

  statement {
    sid       = "ReadRunnerImageParameter"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = [var.ami_ssm_parameter_arn]
  }

  statement {
    sid     = "ListOwnBuckets"
    actions = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions"]
    resources = [
      "arn:${local.partition}:s3:::${var.artifacts_bucket_name}",
      "arn:${local.partition}:s3:::${var.sources_bucket_name}",
    ]
  }

  statement {
    sid = "ReadWriteOwnObjects"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [
      "arn:${local.partition}:s3:::${var.artifacts_bucket_name}/*",
      "arn:${local.partition}:s3:::${var.sources_bucket_name}/*",
    ]
  }

  statement {
    sid       = "UseBucketKeyThroughS3Only"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-controlplane-"
  description        = "TraceLoom control plane: launches, tags and terminates runners; reads and writes its two buckets"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "traceloom-controlplane"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count = var.enable_ssm_session_manager ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-controlplane-"
  role        = aws_iam_role.this.name

  tags = var.tags
}

################################################################################
# Host
################################################################################

# Lives apart from the instance so that replacing the host (a new image, a
# changed setting) keeps the run history and caches.
resource "aws_ebs_volume" "data" {
  availability_zone = data.aws_subnet.host.availability_zone
  size              = var.data_volume_size_gib
  type              = "gp3"
  encrypted         = true
  kms_key_id        = var.kms_key_arn

  tags = merge(var.tags, { Name = "${var.name}-controlplane-data" })
}

resource "aws_instance" "this" {
  ami                         = data.aws_ssm_parameter.host_ami.insecure_value
  instance_type               = var.instance_type
  subnet_id                   = var.host_subnet_id
  vpc_security_group_ids      = [aws_security_group.this.id]
  iam_instance_profile        = aws_iam_instance_profile.this.name
  associate_public_ip_address = false
  ebs_optimized               = true
  monitoring                  = true
  disable_api_termination     = var.deletion_protection

  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    data_volume_id = aws_ebs_volume.data.id
    environment    = local.environment
    package_spec   = var.package_spec
    package_s3_uri = var.package_s3_key == "" ? "" : "s3://${var.sources_bucket_name}/${var.package_s3_key}"
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = 20
    encrypted             = true
    kms_key_id            = var.kms_key_arn
    delete_on_termination = true
  }

  tags        = merge(var.tags, { Name = "${var.name}-controlplane" })
  volume_tags = merge(var.tags, { Name = "${var.name}-controlplane-root" })

  lifecycle {
    # A newer Ubuntu image must not replace the host behind the operator's
    # back; taint or replace the instance to move to it.
    ignore_changes = [ami]
  }
}

# Replacing the host stops it first, so that the database on the volume is
# closed cleanly before the volume moves to the new host.
resource "aws_volume_attachment" "data" {
  device_name                    = "/dev/sdf"
  volume_id                      = aws_ebs_volume.data.id
  instance_id                    = aws_instance.this.id
  stop_instance_before_detaching = true
}

################################################################################
# Backup of the data volume
################################################################################

resource "aws_backup_vault" "this" {
  count = var.enable_backup ? 1 : 0

  name        = "${var.name}-controlplane"
  kms_key_arn = var.kms_key_arn

  tags = var.tags
}

resource "aws_backup_plan" "this" {
  count = var.enable_backup ? 1 : 0

  name = "${var.name}-controlplane-daily"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this[0].name
    schedule          = "cron(0 3 * * ? *)"

    lifecycle {
      delete_after = var.backup_retention_days
    }
  }

  tags = var.tags
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    sid     = "BackupAssume"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  count = var.enable_backup ? 1 : 0

  name_prefix        = "${var.name}-backup-"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  count = var.enable_backup ? 1 : 0

  role       = aws_iam_role.backup[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_selection" "this" {
  count = var.enable_backup ? 1 : 0

  name         = "${var.name}-controlplane-data"
  plan_id      = aws_backup_plan.this[0].id
  iam_role_arn = aws_iam_role.backup[0].arn
  resources    = [aws_ebs_volume.data.arn]
}

################################################################################
# Load balancer
################################################################################

resource "aws_security_group" "alb" {
  count = var.create_alb ? 1 : 0

  name_prefix = "${var.name}-alb-"
  description = "TraceLoom API load balancer"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = var.create_alb ? { for pair in setproduct([443, 80], var.ingress_cidr_blocks) : "${pair[0]}-${pair[1]}" => pair } : {}

  security_group_id = aws_security_group.alb[0].id
  description       = each.value[0] == 443 ? "HTTPS to the API" : "HTTP, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_host" {
  count = var.create_alb ? 1 : 0

  security_group_id            = aws_security_group.alb[0].id
  description                  = "To the control plane host"
  ip_protocol                  = "tcp"
  from_port                    = var.service_port
  to_port                      = var.service_port
  referenced_security_group_id = aws_security_group.this.id

  tags = var.tags
}

resource "aws_lb" "this" {
  count = var.create_alb ? 1 : 0

  name_prefix                = "tl-"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  subnets                    = var.alb_subnet_ids
  security_groups            = [aws_security_group.alb[0].id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 120

  access_logs {
    enabled = true
    bucket  = var.alb_log_bucket_name
    prefix  = var.alb_log_prefix
  }

  tags = merge(var.tags, { Name = "${var.name}-api" })
}

resource "aws_lb_target_group" "this" {
  count = var.create_alb ? 1 : 0

  name_prefix          = "tl-"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "HTTP"
  port                 = var.service_port
  deregistration_delay = 30

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_target_group_attachment" "this" {
  count = var.create_alb ? 1 : 0

  target_group_arn = aws_lb_target_group.this[0].arn
  target_id        = aws_instance.this.id
  port             = var.service_port
}

resource "aws_lb_listener" "https" {
  count = var.create_alb ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  protocol          = "HTTPS"
  port              = 443
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[0].arn
  }

  tags = var.tags
}

resource "aws_lb_listener" "http_redirect" {
  count = var.create_alb ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  protocol          = "HTTP"
  port              = 80

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}
