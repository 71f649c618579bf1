output "api_url" {
  description = "Base URL of the TraceLoom API and dashboard (POST $api_url/api/runs)."
  value       = local.api_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer, to point var.domain_name at (null without the load balancer)."
  value       = var.create_alb ? aws_lb.this[0].dns_name : null
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for an alias record (null without the load balancer)."
  value       = var.create_alb ? aws_lb.this[0].zone_id : null
}

output "security_group_id" {
  description = "ID of the control plane host's security group."
  value       = aws_security_group.this.id
}

output "alb_security_group_id" {
  description = "ID of the load balancer's security group (null without the load balancer)."
  value       = var.create_alb ? aws_security_group.alb[0].id : null
}

output "instance_id" {
  description = "ID of the control plane host, e.g. for `aws ssm start-session --target`."
  value       = aws_instance.this.id
}

output "role_arn" {
  description = "ARN of the control plane's IAM role."
  value       = aws_iam_role.this.arn
}

output "data_volume_id" {
  description = "ID of the EBS volume mounted at /var/lib/traceloom."
  value       = aws_ebs_volume.data.id
}

output "environment" {
  description = "Settings `traceloom serve` starts with (written to /etc/traceloom/traceloom.env on the host)."
  value       = local.environment
}
