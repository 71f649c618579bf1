variable "bucket_prefix" {
  description = "Beginning of the bucket's name; AWS appends a unique suffix."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,35}-$", var.bucket_prefix))
    error_message = "The bucket prefix must hold at most 37 lowercase letters, digits and hyphens, and end with a hyphen."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket's objects (SSE-KMS with a bucket key)."
  type        = string
}

variable "access_log_bucket_name" {
  description = "Name of the bucket that receives this bucket's S3 server access logs."
  type        = string
}

variable "access_log_prefix" {
  description = "Key prefix of this bucket's server access logs in var.access_log_bucket_name, e.g. s3/artifacts/."
  type        = string

  validation {
    condition     = endswith(var.access_log_prefix, "/")
    error_message = "The access log prefix must end with a slash."
  }
}

variable "lifecycle_rule_id" {
  description = "ID of the bucket's lifecycle rule, which names what the rule expires."
  type        = string
}

variable "expiration_days" {
  description = "Days after which current objects are deleted; null keeps them until they are overwritten or deleted."
  type        = number
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which an overwritten or deleted object version is removed for good."
  type        = number
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the parts of an unfinished multipart upload are deleted."
  type        = number
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket while it still holds objects."
  type        = bool
}

variable "tags" {
  description = "Tags added to the bucket."
  type        = map(string)
}
