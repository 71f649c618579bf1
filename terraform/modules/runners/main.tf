# What a runner is: the launch template that the control plane hands to
# EC2 CreateFleet (type instant, Spot, price-capacity-optimized; instance
# types and subnets come from the control plane as overrides), the
# security group that lets only the control plane in, and an instance
# profile that carries no permission of value.

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  # Every runner and its volumes carry this tag; the control plane may
  # terminate only instances that have it.
  managed_tags = { "traceloom:managed" = "true" }

  ami_ssm_parameter_arn = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:parameter${var.ami_ssm_parameter_name}"
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-runner-"
  description = "TraceLoom runners: SSH from the control plane only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-runner" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_controlplane" {
  security_group_id            = aws_security_group.this.id
  description                  = "SSH from the TraceLoom control plane"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = var.controlplane_security_group_id

  tags = var.tags
}

# The other half of the same path: the control plane may open SSH
# connections to runners and to nothing else on port 22.
resource "aws_vpc_security_group_egress_rule" "controlplane_ssh_to_runners" {
  security_group_id            = var.controlplane_security_group_id
  description                  = "SSH to TraceLoom runners"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.this.id

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "application" {
  for_each = { for pair in setproduct(var.egress_ports, var.egress_cidr_blocks) : "${pair[0]}-${pair[1]}" => pair }

  security_group_id = aws_security_group.this.id
  description       = "Runner to the application under test"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]

  tags = var.tags
}

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

# Runners hold no AWS credentials of value: the role has no policy unless
# Session Manager access is asked for, and then only the managed core one.
resource "aws_iam_role" "this" {
  name_prefix        = "${var.name}-runner-"
  description        = "TraceLoom runner: no permissions beyond optional Session Manager access"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count = var.enable_ssm_session_manager ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-runner-"
  role        = aws_iam_role.this.name

  tags = var.tags
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-runner-"
  description            = "TraceLoom runner; image from SSM ${var.ami_ssm_parameter_name}"
  update_default_version = true

  # Resolved by EC2 at every launch, so publishing a new image to the
  # parameter is all it takes to roll runners forward.
  image_id = "resolve:ssm:${var.ami_ssm_parameter_name}"

  # A runner that shuts itself down (the harness's last resort when the
  # control plane is gone) must not keep billing as a stopped instance.
  instance_initiated_shutdown_behavior = "terminate"
  ebs_optimized                        = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = [aws_security_group.this.id]
  }

  # Encrypted with the account's default EBS key: a customer managed key
  # would also need grants for the EC2 Spot service-linked role.
  block_device_mappings {
    device_name = "/dev/sda1"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gib
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = false
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, local.managed_tags, { Name = "${var.name}-runner" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, local.managed_tags, { Name = "${var.name}-runner" })
  }

  tags = var.tags
}
