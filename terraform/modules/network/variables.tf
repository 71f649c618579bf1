variable "name" {
  description = "Prefix for the names of every resource this module creates."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "The name must start with a lowercase letter and hold at most 24 lowercase letters, digits and hyphens."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC, e.g. 10.42.0.0/16."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "The VPC CIDR must be an IPv4 CIDR block (a.b.c.d/n) no smaller than /24."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread the subnets over; runners land in every one of them."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 8
    error_message = "Give between 2 and 8 availability zones, so that Spot capacity can be found in more than one."
  }

  validation {
    condition     = length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "The availability zones must not repeat."
  }
}

variable "subnet_newbits" {
  description = "Bits added to the VPC prefix for each subnet (4 turns a /16 into /20 subnets)."
  type        = number
  default     = 4

  validation {
    condition     = var.subnet_newbits >= 2 && var.subnet_newbits <= 8
    error_message = "The subnet newbits must be between 2 and 8."
  }
}

variable "single_nat_gateway" {
  description = "Route every private subnet through one NAT gateway (cheaper) instead of one per availability zone (survives the loss of a zone)."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the flow log group."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "The KMS key ARN must look like arn:aws:kms:REGION:ACCOUNT:key/ID."
  }
}

variable "flow_log_retention_days" {
  description = "Days to keep VPC flow log records in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "The retention must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "tags" {
  description = "Tags added to every resource this module creates."
  type        = map(string)
  default     = {}
}
