# TraceLoom in one AWS account: the network (or an existing VPC), the
# buckets, the runner launch template and the control plane host, tied
# together by one KMS key.
#
# module.runners and module.controlplane refer to each other: runners let
# SSH in only from the control plane's security group, and the control
# plane may launch only from the runners' launch template. Terraform
# orders the individual resources, not the modules, so this is no cycle.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  vpc_id             = var.create_vpc ? module.network[0].vpc_id : var.vpc_id
  private_subnet_ids = var.create_vpc ? module.network[0].private_subnet_ids : var.private_subnet_ids
  public_subnet_ids  = var.create_vpc ? module.network[0].public_subnet_ids : var.public_subnet_ids
  alb_subnet_ids     = var.alb_internal ? local.private_subnet_ids : local.public_subnet_ids
}

################################################################################
# Encryption key
################################################################################

locals {
  # In a key policy "Resource": "*" means this key and nothing else.
  kms_key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # Hands the key's management to IAM policies of this account, as
        # AWS does for the keys it creates by default.
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsTraceloomGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.region}.amazonaws.com" }
        Action    = ["kms:Decrypt*", "kms:Describe*", "kms:Encrypt*", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:log-group:/traceloom/${var.name}/*"
          }
        }
      },
    ]
  }
}

resource "aws_kms_key" "this" {
  description             = "TraceLoom ${var.name}: buckets, flow logs and control plane volumes"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = jsonencode(local.kms_key_policy)

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

################################################################################
# Components
################################################################################

module "network" {
  source = "./modules/network"
  count  = var.create_vpc ? 1 : 0

  name                    = var.name
  vpc_cidr                = var.vpc_cidr
  availability_zones      = var.availability_zones
  single_nat_gateway      = var.single_nat_gateway
  kms_key_arn             = aws_kms_key.this.arn
  flow_log_retention_days = var.flow_log_retention_days
  tags                    = var.tags
}

module "storage" {
  source = "./modules/storage"

  name                               = var.name
  kms_key_arn                        = aws_kms_key.this.arn
  artifact_expiration_days           = var.artifact_expiration_days
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  force_destroy                      = var.force_destroy_buckets
  tags                               = var.tags
}

module "runners" {
  source = "./modules/runners"

  name                           = var.name
  vpc_id                         = local.vpc_id
  controlplane_security_group_id = module.controlplane.security_group_id
  ami_ssm_parameter_name         = var.runner_ami_ssm_parameter_name
  root_volume_size_gib           = var.runner_root_volume_size_gib
  egress_ports                   = var.runner_egress_ports
  egress_cidr_blocks             = var.runner_egress_cidr_blocks
  enable_ssm_session_manager     = var.enable_runner_ssm_session_manager
  tags                           = var.tags
}

module "controlplane" {
  source = "./modules/controlplane"

  name                  = var.name
  vpc_id                = local.vpc_id
  host_subnet_id        = local.private_subnet_ids[0]
  create_alb            = var.create_alb
  alb_internal          = var.alb_internal
  alb_subnet_ids        = var.create_alb ? local.alb_subnet_ids : []
  certificate_arn       = var.certificate_arn
  domain_name           = var.domain_name
  ingress_cidr_blocks   = var.ingress_cidr_blocks
  alb_log_bucket_name   = module.storage.logs_bucket_name
  alb_log_prefix        = module.storage.alb_log_prefix
  deletion_protection   = var.deletion_protection
  instance_type         = var.controlplane_instance_type
  data_volume_size_gib  = var.controlplane_data_volume_size_gib
  package_spec          = var.package_spec
  package_s3_key        = var.package_s3_key
  extra_environment     = var.extra_environment
  enable_backup         = var.enable_backup
  launch_template_id    = module.runners.launch_template_id
  launch_template_arn   = module.runners.launch_template_arn
  runner_role_arn       = module.runners.role_arn
  runner_subnet_ids     = local.private_subnet_ids
  runner_instance_types = var.runner_instance_types
  max_instances         = var.max_instances
  allow_on_demand_fill  = var.allow_on_demand_fill
  ami_ssm_parameter_arn = module.runners.ami_ssm_parameter_arn
  artifacts_bucket_name = module.storage.artifacts_bucket_name
  sources_bucket_name   = module.storage.sources_bucket_name
  kms_key_arn           = aws_kms_key.this.arn
  tags                  = var.tags
}
