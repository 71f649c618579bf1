# TraceLoom in a VPC you already run: nothing of the network is created;
# runners and the control plane go into your private subnets, and the
# load balancer is internal (reachable from the VPC and your VPN only).

provider "aws" {
  region = var.region
}

module "traceloom" {
  source = "../.."

  name       = "traceloom-shared"
  create_vpc = false

  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids

  alb_internal        = true
  certificate_arn     = var.certificate_arn
  domain_name         = var.domain_name
  ingress_cidr_blocks = var.ingress_cidr_blocks

  runner_egress_cidr_blocks = ["10.0.0.0/8"]
  package_spec              = "traceloom==0.1.0"
}
