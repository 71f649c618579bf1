variable "name" {
  description = "Prefix for the names of every resource this module creates."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "The name must start with a lowercase letter and hold at most 24 lowercase letters, digits and hyphens."
  }
}

variable "vpc_id" {
  description = "ID of the VPC the control plane host (and its load balancer) live in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "The VPC ID must look like vpc-0123456789abcdef0."
  }
}

variable "host_subnet_id" {
  description = "ID of the private subnet the control plane host runs in; its data volume is created in the same availability zone."
  type        = string

  validation {
    condition     = can(regex("^subnet-[0-9a-f]{8,17}$", var.host_subnet_id))
    error_message = "The subnet ID must look like subnet-0123456789abcdef0."
  }
}

variable "create_alb" {
  description = "Put an HTTPS application load balancer in front of the control plane. Set to false when the operator brings their own front (then var.ingress_cidr_blocks reach the service port directly)."
  type        = bool
  default     = true
}

variable "alb_internal" {
  description = "Make the load balancer internal (reachable only from the VPC and peered networks) instead of internet-facing."
  type        = bool
  default     = false
}

variable "alb_subnet_ids" {
  description = "IDs of the subnets for the load balancer: public subnets for an internet-facing one, private ones for an internal one. At least two, in different availability zones, when var.create_alb is true."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.alb_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "Each subnet ID must look like subnet-0123456789abcdef0."
  }

  validation {
    condition     = !var.create_alb || length(var.alb_subnet_ids) >= 2
    error_message = "A load balancer needs at least two subnets in different availability zones."
  }
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate the load balancer's HTTPS listener presents. Required when var.create_alb is true."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "The certificate ARN must look like arn:aws:acm:REGION:ACCOUNT:certificate/ID."
  }

  validation {
    condition     = !var.create_alb || var.certificate_arn != null
    error_message = "The load balancer needs a certificate: set certificate_arn, or set create_alb = false."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-", var.ssl_policy))
    error_message = "The TLS policy must be one of the ELBSecurityPolicy-* names."
  }
}

variable "domain_name" {
  description = "DNS name that the operator points at the load balancer (or at their own front), e.g. traceloom.example.com. It makes the API URL and the links in run answers; null uses the load balancer's own DNS name."
  type        = string
  default     = null

  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "The domain name must be a lowercase DNS name such as traceloom.example.com."
  }

  validation {
    condition     = var.create_alb || var.domain_name != null
    error_message = "Without the load balancer there is no DNS name to fall back on: set domain_name to the name of your own front."
  }
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the API: on ports 443 and 80 of the load balancer, or on the service port of the host when var.create_alb is false. Typically the CI system's egress ranges and the office network."
  type        = list(string)

  validation {
    condition     = length(var.ingress_cidr_blocks) > 0 && alltrue([for cidr in var.ingress_cidr_blocks : can(cidrnetmask(cidr))])
    error_message = "Give at least one range, each an IPv4 CIDR block (a.b.c.d/n)."
  }
}

variable "alb_log_bucket_name" {
  description = "Name of the bucket that receives the load balancer's access logs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.alb_log_bucket_name))
    error_message = "The bucket name must be a valid S3 bucket name."
  }
}

variable "alb_log_prefix" {
  description = "Key prefix of the load balancer's access logs in var.alb_log_bucket_name."
  type        = string
  default     = "alb"
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion and the host from API termination. Turn off before terraform destroy."
  type        = bool
  default     = true
}

variable "instance_type" {
  description = "EC2 instance type of the control plane host."
  type        = string
  default     = "t3.medium"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance type must look like t3.medium."
  }
}

variable "host_ami_ssm_parameter_name" {
  description = "Public SSM parameter that names the control plane host's image (Ubuntu 24.04 LTS by default: it brings Python 3.12)."
  type        = string
  default     = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

variable "data_volume_size_gib" {
  description = "Size in GiB of the encrypted volume mounted at /var/lib/traceloom (database, source and dependency caches). It outlives host replacement."
  type        = number
  default     = 50

  validation {
    condition     = var.data_volume_size_gib >= 8 && var.data_volume_size_gib <= 16384
    error_message = "The data volume must be between 8 and 16384 GiB."
  }
}

variable "service_port" {
  description = "TCP port `traceloom serve` listens on inside the VPC."
  type        = number
  default     = 8080

  validation {
    condition     = var.service_port >= 1024 && var.service_port <= 65535 && floor(var.service_port) == var.service_port
    error_message = "The service port must be a whole number between 1024 and 65535."
  }
}

variable "health_check_path" {
  description = "HTTP path the load balancer polls on the host; it must answer 200 without an API key."
  type        = string
  default     = "/healthz"

  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "The health check path must start with /."
  }
}

variable "package_spec" {
  description = "What `pip install` gets to install the control plane: a requirement such as traceloom==0.1.0 from the index the host can reach, or a VCS or wheel URL. Ignored when var.package_s3_key is set."
  type        = string
  default     = "traceloom"

  validation {
    condition     = length(trimspace(var.package_spec)) > 0 && !can(regex("[\\s;&|`$'\"]", var.package_spec))
    error_message = "The package spec must be one pip requirement without spaces or shell characters."
  }
}

variable "package_s3_key" {
  description = "Key of a control plane wheel in the sources bucket (e.g. releases/traceloom-0.1.0-py3-none-any.whl). When set, the host installs that wheel instead of var.package_spec."
  type        = string
  default     = ""

  validation {
    condition     = var.package_s3_key == "" || can(regex("^[A-Za-z0-9!_.*()/-]+\\.whl$", var.package_s3_key))
    error_message = "The package key must be an S3 key ending in .whl, made of letters, digits and !_.*()/-."
  }
}

variable "launch_template_id" {
  description = "ID of the runner launch template (TRACELOOM_LAUNCH_TEMPLATE_ID)."
  type        = string

  validation {
    condition     = can(regex("^lt-[0-9a-f]{8,17}$", var.launch_template_id))
    error_message = "The launch template ID must look like lt-0123456789abcdef0."
  }
}

variable "launch_template_arn" {
  description = "ARN of the runner launch template; CreateFleet and RunInstances are allowed only with it."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ec2:[a-z0-9-]+:[0-9]{12}:launch-template/lt-[0-9a-f]{8,17}$", var.launch_template_arn))
    error_message = "The launch template ARN must look like arn:aws:ec2:REGION:ACCOUNT:launch-template/lt-ID."
  }
}

variable "runner_role_arn" {
  description = "ARN of the runner role: the only role the control plane may pass to EC2."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.runner_role_arn))
    error_message = "The runner role ARN must look like arn:aws:iam::ACCOUNT:role/NAME."
  }
}

variable "runner_subnet_ids" {
  description = "IDs of the private subnets runners are launched in (TRACELOOM_SUBNET_IDS), in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.runner_subnet_ids) >= 2 && alltrue([for id in var.runner_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "Give at least two subnet IDs, each like subnet-0123456789abcdef0."
  }
}

variable "runner_instance_types" {
  description = "Instance types CreateFleet may pick runners from (TRACELOOM_INSTANCE_TYPES); more types find Spot capacity more often."
  type        = list(string)

  validation {
    condition     = length(var.runner_instance_types) > 0 && alltrue([for type in var.runner_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", type))])
    error_message = "Give at least one instance type, each like c7i.large."
  }
}

variable "max_instances" {
  description = "Most runner instances the control plane keeps at once across all runs (TRACELOOM_MAX_INSTANCES)."
  type        = number
  default     = 20

  validation {
    condition     = var.max_instances >= 1 && floor(var.max_instances) == var.max_instances
    error_message = "The instance limit must be a whole number of at least 1."
  }
}

variable "allow_on_demand_fill" {
  description = "Launch on-demand runners for the part of a run that Spot capacity cannot give, after Spot was retried (TRACELOOM_ON_DEMAND_FILL). Off, a run goes on with the Spot runners it got."
  type        = bool
  default     = false
}

variable "ami_ssm_parameter_arn" {
  description = "ARN of the SSM parameter holding the runner image ID; the control plane may read it."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/.+$", var.ami_ssm_parameter_arn))
    error_message = "The parameter ARN must look like arn:aws:ssm:REGION:ACCOUNT:parameter/NAME."
  }
}

variable "artifacts_bucket_name" {
  description = "Name of the artifacts bucket (TRACELOOM_ARTIFACTS_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifacts_bucket_name))
    error_message = "The bucket name must be a valid S3 bucket name."
  }
}

variable "sources_bucket_name" {
  description = "Name of the bucket of zipped suites (TRACELOOM_SOURCES_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.sources_bucket_name))
    error_message = "The bucket name must be a valid S3 bucket name."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the buckets and the host's volumes; the control plane may use it through S3 only."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "The KMS key ARN must look like arn:aws:kms:REGION:ACCOUNT:key/ID."
  }
}

variable "extra_environment" {
  description = "More TRACELOOM_* settings for `traceloom serve`, e.g. { TRACELOOM_LOG_LEVEL = \"debug\" }. Never put a secret here: it ends up in user data."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key, value in var.extra_environment : can(regex("^TRACELOOM_[A-Z0-9_]+$", key)) && can(regex("^[A-Za-z0-9_.,:/@+=-]*$", value))])
    error_message = "Keys must be TRACELOOM_* names in capitals; values may hold only letters, digits and _.,:/@+=- (no spaces, quotes or shell characters)."
  }
}

variable "enable_ssm_session_manager" {
  description = "Let operators open a Session Manager shell on the host (to run `traceloom` admin commands such as creating API keys); the host has no SSH key."
  type        = bool
  default     = true
}

variable "enable_backup" {
  description = "Back up the data volume daily with AWS Backup."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days each daily backup of the data volume is kept."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "The backup retention must be a whole number of days of at least 1."
  }
}

variable "tags" {
  description = "Tags added to every resource this module creates."
  type        = map(string)
  default     = {}
}
