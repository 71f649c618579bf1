output "api_url" {
  description = "Base URL of the TraceLoom API and dashboard; CI posts runs to $api_url/api/runs."
  value       = module.controlplane.api_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer: point var.domain_name at it (null without the load balancer)."
  value       = module.controlplane.alb_dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for an alias record (null without the load balancer)."
  value       = module.controlplane.alb_zone_id
}

output "artifacts_bucket_name" {
  description = "Name of the bucket that holds run artifacts."
  value       = module.storage.artifacts_bucket_name
}

output "sources_bucket_name" {
  description = "Name of the bucket CI uploads zipped suites to (runs with testSource type s3)."
  value       = module.storage.sources_bucket_name
}

output "logs_bucket_name" {
  description = "Name of the bucket that receives S3 and load balancer access logs."
  value       = module.storage.logs_bucket_name
}

output "launch_template_id" {
  description = "ID of the runner launch template."
  value       = module.runners.launch_template_id
}

output "runner_security_group_id" {
  description = "ID of the runners' security group."
  value       = module.runners.security_group_id
}

output "controlplane_security_group_id" {
  description = "ID of the control plane host's security group."
  value       = module.controlplane.security_group_id
}

output "alb_security_group_id" {
  description = "ID of the load balancer's security group (null without the load balancer)."
  value       = module.controlplane.alb_security_group_id
}

output "controlplane_instance_id" {
  description = "ID of the control plane host (aws ssm start-session --target ID)."
  value       = module.controlplane.instance_id
}

output "runner_ami_ssm_parameter_name" {
  description = "SSM parameter that the Packer build must write the runner image ID to."
  value       = module.runners.ami_ssm_parameter_name
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the buckets, the flow logs and the control plane's volumes."
  value       = aws_kms_key.this.arn
}

output "vpc_id" {
  description = "ID of the VPC TraceLoom runs in (created or reused)."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets runners are launched in."
  value       = local.private_subnet_ids
}
