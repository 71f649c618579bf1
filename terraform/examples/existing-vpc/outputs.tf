output "api_url" {
  description = "Base URL of the TraceLoom API."
  value       = module.traceloom.api_url
}

output "alb_dns_name" {
  description = "Point an internal DNS record for var.domain_name at this name."
  value       = module.traceloom.alb_dns_name
}

output "runner_security_group_id" {
  description = "Runners' security group, for rules on the application under test that let runners in."
  value       = module.traceloom.runner_security_group_id
}

output "controlplane_security_group_id" {
  description = "Control plane's security group."
  value       = module.traceloom.controlplane_security_group_id
}
