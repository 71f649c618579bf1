variable "name" {
  description = "Prefix for the names of every resource this module creates."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "The name must start with a lowercase letter and hold at most 24 lowercase letters, digits and hyphens."
  }
}

variable "vpc_id" {
  description = "ID of the VPC that runners are launched in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "The VPC ID must look like vpc-0123456789abcdef0."
  }
}

variable "controlplane_security_group_id" {
  description = "ID of the control plane's security group: the only source allowed to reach runners on SSH (port 22)."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]{8,17}$", var.controlplane_security_group_id))
    error_message = "The security group ID must look like sg-0123456789abcdef0."
  }
}

variable "ami_ssm_parameter_name" {
  description = "Name of the SSM parameter that holds the runner image ID. The Packer build in runner-image/ writes it; the launch template resolves it at every launch, so a new image needs no Terraform change."
  type        = string
  default     = "/traceloom/runner-ami"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.ami_ssm_parameter_name))
    error_message = "The parameter name must be a path such as /traceloom/runner-ami."
  }
}

variable "root_volume_size_gib" {
  description = "Size in GiB of a runner's encrypted gp3 root volume (browsers, the suite, its dependencies and its artifacts)."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size_gib >= 16 && var.root_volume_size_gib <= 1024
    error_message = "The root volume must be between 16 and 1024 GiB."
  }
}

variable "egress_ports" {
  description = "TCP ports runners may open connections to, e.g. the web application under test."
  type        = list(number)
  default     = [80, 443]

  validation {
    condition     = length(var.egress_ports) > 0 && alltrue([for port in var.egress_ports : port >= 1 && port <= 65535 && floor(port) == port])
    error_message = "Give at least one port, each a whole number between 1 and 65535."
  }
}

variable "egress_cidr_blocks" {
  description = "IPv4 ranges runners may connect to on var.egress_ports: where the application under test lives."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.egress_cidr_blocks) > 0 && alltrue([for cidr in var.egress_cidr_blocks : can(cidrnetmask(cidr))])
    error_message = "Give at least one range, each an IPv4 CIDR block (a.b.c.d/n)."
  }
}

variable "enable_ssm_session_manager" {
  description = "Attach the AmazonSSMManagedInstanceCore policy to the runner role so that an operator can open a Session Manager shell on a runner. Runners otherwise hold no AWS permission at all."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource this module creates, and to every runner instance and volume."
  type        = map(string)
  default     = {}
}
