# A complete TraceLoom deployment: a new VPC over three availability
# zones, an internet-facing HTTPS load balancer for your DNS name, and
# runners picked from several instance types for Spot capacity.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "traceloom:deployment" = "complete-example"
    }
  }
}

module "traceloom" {
  source = "../.."

  name               = "traceloom"
  availability_zones = var.availability_zones
  vpc_cidr           = "10.42.0.0/16"

  certificate_arn     = var.certificate_arn
  domain_name         = var.domain_name
  ingress_cidr_blocks = var.ingress_cidr_blocks

  runner_instance_types    = ["c7i.large", "c6i.large", "c7a.large", "c6a.large", "m7i.large"]
  max_instances            = 40
  artifact_expiration_days = 30

  package_s3_key = "releases/traceloom-0.1.0-py3-none-any.whl"

  tags = {
    Team = "qa-platform"
  }
}
