output "launch_template_id" {
  description = "ID of the runner launch template (TRACELOOM_LAUNCH_TEMPLATE_ID)."
  value       = aws_launch_template.this.id
}

output "launch_template_arn" {
  description = "ARN of the runner launch template; the control plane's launch permissions are conditioned on it."
  value       = aws_launch_template.this.arn
}

output "launch_template_default_version" {
  description = "Default version of the runner launch template."
  value       = aws_launch_template.this.default_version
}

output "security_group_id" {
  description = "ID of the runners' security group."
  value       = aws_security_group.this.id
}

output "role_arn" {
  description = "ARN of the runner role: the only role the control plane may pass to EC2."
  value       = aws_iam_role.this.arn
}

output "instance_profile_arn" {
  description = "ARN of the runner instance profile."
  value       = aws_iam_instance_profile.this.arn
}

output "ami_ssm_parameter_name" {
  description = "Name of the SSM parameter the launch template reads the runner image ID from."
  value       = var.ami_ssm_parameter_name
}

output "ami_ssm_parameter_arn" {
  description = "ARN of the SSM parameter the launch template reads the runner image ID from."
  value       = local.ami_ssm_parameter_arn
}
