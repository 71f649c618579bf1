output "api_url" {
  description = "Base URL of the TraceLoom API; CI posts runs to $api_url/api/runs."
  value       = module.traceloom.api_url
}

output "alb_dns_name" {
  description = "Point a CNAME or alias record for var.domain_name at this name."
  value       = module.traceloom.alb_dns_name
}

output "sources_bucket_name" {
  description = "Bucket to upload the control plane wheel (releases/) and zipped suites to."
  value       = module.traceloom.sources_bucket_name
}

output "artifacts_bucket_name" {
  description = "Bucket that holds run artifacts."
  value       = module.traceloom.artifacts_bucket_name
}

output "launch_template_id" {
  description = "ID of the runner launch template."
  value       = module.traceloom.launch_template_id
}

output "controlplane_instance_id" {
  description = "ID of the control plane host, for aws ssm start-session."
  value       = module.traceloom.controlplane_instance_id
}
