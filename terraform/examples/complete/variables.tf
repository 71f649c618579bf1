variable "region" {
  description = "AWS region to deploy TraceLoom into."
  type        = string
  default     = "eu-west-1"
}

variable "availability_zones" {
  description = "Availability zones of var.region to spread runners over (at least two)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "domain_name" {
  description = "DNS name you will point at the load balancer, e.g. traceloom.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "ARN of an ACM certificate for var.domain_name in var.region."
  type        = string
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the API: your CI system's egress ranges and your office network."
  type        = list(string)
}
