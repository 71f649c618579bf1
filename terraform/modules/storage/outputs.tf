output "artifacts_bucket_name" {
  description = "Name of the bucket that holds run artifacts."
  value       = module.artifacts.name
}

output "artifacts_bucket_arn" {
  description = "ARN of the bucket that holds run artifacts."
  value       = module.artifacts.arn
}

output "sources_bucket_name" {
  description = "Name of the bucket that CI uploads zipped suites to."
  value       = module.sources.name
}

output "sources_bucket_arn" {
  description = "ARN of the bucket that CI uploads zipped suites to."
  value       = module.sources.arn
}

output "logs_bucket_name" {
  description = "Name of the bucket that receives S3 server access logs and load balancer access logs."
  # Read from the bucket policy so that whoever points access logs at the
  # bucket waits until the delivery services are allowed to write to it.
  value = aws_s3_bucket_policy.logs.bucket
}

output "alb_log_prefix" {
  description = "Key prefix under which the load balancer writes its access logs in the logs bucket."
  value       = local.alb_log_prefix
}
