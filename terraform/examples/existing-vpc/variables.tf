variable "region" {
  description = "AWS region of the existing VPC."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "ID of the existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "IDs of private subnets of that VPC, in at least two availability zones, with a NAT route to the internet."
  type        = list(string)
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the API, e.g. the VPC's own range and the VPN's."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ARN of an ACM certificate for var.domain_name."
  type        = string
}

variable "domain_name" {
  description = "Internal DNS name you will point at the load balancer."
  type        = string
}
