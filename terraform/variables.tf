################################################################################
# General
################################################################################

variable "name" {
  description = "Prefix for the names of every resource; lets several TraceLoom deployments share an account."
  type        = string
  default     = "traceloom"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "The name must start with a lowercase letter and hold at most 24 lowercase letters, digits and hyphens."
  }
}

variable "tags" {
  description = "Tags added to every resource, including the runner instances and their volumes."
  type        = map(string)
  default     = {}
}

################################################################################
# Network
################################################################################

variable "create_vpc" {
  description = "Create a VPC for TraceLoom. Set to false to reuse an existing one through var.vpc_id, var.private_subnet_ids and var.public_subnet_ids."
  type        = bool
  default     = true
}

variable "availability_zones" {
  description = "Availability zones of the VPC that TraceLoom creates; runners are spread over all of them. Ignored when var.create_vpc is false."
  type        = list(string)
  default     = []

  validation {
    condition     = !var.create_vpc || length(var.availability_zones) >= 2
    error_message = "Give at least two availability zones so that Spot capacity can be found in more than one."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC that TraceLoom creates."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "The VPC CIDR must be an IPv4 CIDR block (a.b.c.d/n)."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for the whole VPC (cheaper) rather than one per availability zone."
  type        = bool
  default     = true
}

variable "flow_log_retention_days" {
  description = "Days to keep the VPC flow logs of the VPC that TraceLoom creates."
  type        = number
  default     = 365
}

variable "vpc_id" {
  description = "ID of an existing VPC to deploy into. Required when var.create_vpc is false."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "The VPC ID must look like vpc-0123456789abcdef0."
  }

  validation {
    condition     = var.create_vpc || var.vpc_id != null
    error_message = "Set vpc_id when create_vpc is false."
  }
}

variable "private_subnet_ids" {
  description = "IDs of existing private subnets (with a route to the internet through NAT) for runners and the control plane host, in at least two availability zones. Required when var.create_vpc is false."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "Each subnet ID must look like subnet-0123456789abcdef0."
  }

  validation {
    condition     = var.create_vpc || length(var.private_subnet_ids) >= 2
    error_message = "Give at least two private subnets, in different availability zones, when create_vpc is false."
  }
}

variable "public_subnet_ids" {
  description = "IDs of existing public subnets for an internet-facing load balancer, in at least two availability zones. Needed when var.create_vpc is false and the load balancer is internet-facing."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "Each subnet ID must look like subnet-0123456789abcdef0."
  }

  validation {
    condition     = var.create_vpc || !var.create_alb || var.alb_internal || length(var.public_subnet_ids) >= 2
    error_message = "An internet-facing load balancer in an existing VPC needs at least two public subnets."
  }
}

################################################################################
# Storage
################################################################################

variable "artifact_expiration_days" {
  description = "Days after which run artifacts (results, traces, screenshots, reports) are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.artifact_expiration_days > 0
    error_message = "The artifact expiration must be greater than 0 days."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days > 0
    error_message = "The noncurrent version expiration must be greater than 0 days."
  }
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete the buckets with their contents. Keep false outside of throwaway environments."
  type        = bool
  default     = false
}

################################################################################
# Runners
################################################################################

variable "runner_ami_ssm_parameter_name" {
  description = "SSM parameter that holds the runner image ID (written by the Packer build in runner-image/)."
  type        = string
  default     = "/traceloom/runner-ami"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.runner_ami_ssm_parameter_name))
    error_message = "The parameter name must be a path such as /traceloom/runner-ami."
  }
}

variable "runner_instance_types" {
  description = "Instance types the control plane asks CreateFleet for; list several of similar size so that Spot capacity is found."
  type        = list(string)
  default     = ["c7i.large", "c6i.large", "c7a.large", "m7i.large", "m6i.large"]

  validation {
    condition     = length(var.runner_instance_types) > 0
    error_message = "Give at least one runner instance type."
  }

  validation {
    condition     = alltrue([for type in var.runner_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", type))])
    error_message = "Each instance type must look like c7i.large."
  }
}

variable "runner_root_volume_size_gib" {
  description = "Size in GiB of each runner's encrypted gp3 root volume."
  type        = number
  default     = 30
}

variable "runner_egress_ports" {
  description = "TCP ports runners may connect out to (the application under test)."
  type        = list(number)
  default     = [80, 443]
}

variable "runner_egress_cidr_blocks" {
  description = "IPv4 ranges runners may connect out to on var.runner_egress_ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "max_instances" {
  description = "Most runner instances the control plane keeps at once, across all runs."
  type        = number
  default     = 20

  validation {
    condition     = var.max_instances >= 1
    error_message = "The instance limit must be at least 1."
  }
}

variable "allow_on_demand_fill" {
  description = "Fill what Spot cannot give with on-demand runners (the missing count only), after Spot was retried."
  type        = bool
  default     = false
}

variable "enable_runner_ssm_session_manager" {
  description = "Give runners the AmazonSSMManagedInstanceCore policy (Session Manager shells for debugging). Runners otherwise have no AWS permission."
  type        = bool
  default     = false
}

################################################################################
# Control plane
################################################################################

variable "create_alb" {
  description = "Put an HTTPS load balancer in front of the control plane; false when you bring your own front."
  type        = bool
  default     = true
}

variable "alb_internal" {
  description = "Make the load balancer internal (private subnets) instead of internet-facing (public subnets)."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate for the HTTPS listener (for var.domain_name). Required when var.create_alb is true."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "The certificate ARN must look like arn:aws:acm:REGION:ACCOUNT:certificate/ID."
  }
}

variable "domain_name" {
  description = "DNS name you point at the load balancer (or your own front), e.g. traceloom.example.com; it makes the API URL."
  type        = string
  default     = null
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the API: your CI system's egress ranges and your office network."
  type        = list(string)

  validation {
    condition     = length(var.ingress_cidr_blocks) > 0 && alltrue([for cidr in var.ingress_cidr_blocks : can(cidrnetmask(cidr))])
    error_message = "Give at least one range, each an IPv4 CIDR block (a.b.c.d/n)."
  }
}

variable "controlplane_instance_type" {
  description = "Instance type of the control plane host."
  type        = string
  default     = "t3.medium"
}

variable "controlplane_data_volume_size_gib" {
  description = "Size in GiB of the control plane's data volume (database and caches)."
  type        = number
  default     = 50
}

variable "package_spec" {
  description = "pip requirement the host installs the control plane from (e.g. traceloom==0.1.0, or a VCS URL). Ignored when var.package_s3_key is set."
  type        = string
  default     = "traceloom"
}

variable "package_s3_key" {
  description = "Key of a control plane wheel uploaded to the sources bucket (e.g. releases/traceloom-0.1.0-py3-none-any.whl); empty to use var.package_spec."
  type        = string
  default     = ""
}

variable "extra_environment" {
  description = "More TRACELOOM_* settings for `traceloom serve`. Never a secret: it ends up in user data."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the load balancer and the control plane host from deletion. Turn off before terraform destroy."
  type        = bool
  default     = true
}

variable "enable_backup" {
  description = "Back up the control plane's data volume daily with AWS Backup."
  type        = bool
  default     = true
}
