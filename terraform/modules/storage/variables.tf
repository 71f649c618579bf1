variable "name" {
  description = "Prefix for the names of every resource this module creates; bucket names add a random suffix to it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "The name must start with a lowercase letter and hold at most 24 lowercase letters, digits and hyphens."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the artifacts and sources buckets."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "The KMS key ARN must look like arn:aws:kms:REGION:ACCOUNT:key/ID."
  }
}

variable "artifact_expiration_days" {
  description = "Days after which run artifacts (results, traces, screenshots, reports) are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.artifact_expiration_days > 0 && floor(var.artifact_expiration_days) == var.artifact_expiration_days
    error_message = "The artifact expiration must be a whole number of days greater than 0."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which an overwritten or deleted object version is removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days > 0 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "The noncurrent version expiration must be a whole number of days greater than 0."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the parts of an unfinished multipart upload are deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days > 0 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "The multipart upload cleanup must be a whole number of days greater than 0."
  }
}

variable "log_expiration_days" {
  description = "Days to keep S3 server access logs and load balancer access logs."
  type        = number
  default     = 365

  validation {
    condition     = var.log_expiration_days > 0 && floor(var.log_expiration_days) == var.log_expiration_days
    error_message = "The log expiration must be a whole number of days greater than 0."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete buckets that still hold objects. Keep false outside of throwaway environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource this module creates."
  type        = map(string)
  default     = {}
}
