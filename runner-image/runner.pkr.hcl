# The TraceLoom runner image: Ubuntu 24.04 LTS with Node.js, Playwright's
# browsers and system dependencies, the harness, a `runner` user and the
# boot service that installs the per-instance SSH host key from user data.
#
# Written for Packer 1.6.6 (the amazon-ebs builder is built in there). With
# Packer 1.7 or newer, see README.md for the required_plugins block and
# `packer init`.
#
#   packer build -var region=eu-west-1 runner-image/runner.pkr.hcl

variable "region" {
  description = "AWS region to build the image in (the image stays there)."
  type        = string
  default     = "eu-west-1"
}

variable "instance_type" {
  description = "Instance type of the temporary build instance."
  type        = string
  default     = "c7i.large"
}

variable "subnet_id" {
  description = "Subnet for the build instance; empty lets Packer use the default VPC. The build needs outbound HTTPS and inbound SSH from this machine."
  type        = string
  default     = ""
}

variable "root_volume_size_gib" {
  description = "Size in GiB of the image's gp3 root volume; runners can be given more in the launch template."
  type        = number
  default     = 16
}

variable "node_version" {
  description = "Node.js version installed on the image (a 20.x LTS release)."
  type        = string
  default     = "20.20.2"
}

variable "playwright_version" {
  description = "@playwright/test version whose browsers are installed; suites should use the same version."
  type        = string
  default     = "1.56.1"
}

variable "harness_dir" {
  description = "Folder whose contents are installed as the harness (/opt/traceloom/harness); empty means the repository's controlplane/harness."
  type        = string
  default     = ""
}

variable "ssm_parameter_name" {
  description = "SSM parameter that publish-ami.sh writes the new image ID to; the runner launch template reads it."
  type        = string
  default     = "/traceloom/runner-ami"
}

variable "publish" {
  description = "Write the new image ID to var.ssm_parameter_name after the build (needs the aws CLI and ssm:PutParameter); false only prints the command."
  type        = bool
  default     = true
}

locals {
  # timestamp() gives 2024-05-01T12:34:56Z; AMI names allow no colons.
  build_time  = regex_replace(timestamp(), "[-:TZ]", "")
  harness_dir = var.harness_dir != "" ? var.harness_dir : "${path.root}/../controlplane/harness"
}

source "amazon-ebs" "runner" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ubuntu"
  ami_name      = "traceloom-runner-${local.build_time}"

  ami_description = "TraceLoom runner: Ubuntu 24.04, Node.js ${var.node_version}, Playwright ${var.playwright_version} browsers"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
      architecture        = "x86_64"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  # gp3 at its baseline; Packer 1.6.6 insists on explicit iops/throughput.
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gib
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    delete_on_termination = true
  }

  # Packer 1.6.6 has no metadata_options block, so the build instance
  # gets IMDSv2 from the account's instance metadata defaults: run
  #   aws ec2 modify-instance-metadata-defaults --http-tokens required \
  #     --http-put-response-hop-limit 1 --region REGION
  # once per region (README.md). Packer 1.7+ sets it here instead.

  tags = {
    Name                   = "traceloom-runner-${local.build_time}"
    "traceloom:image"      = "runner"
    "traceloom:node"       = var.node_version
    "traceloom:playwright" = var.playwright_version
    "traceloom:base-ami"   = "{{ .SourceAMI }}"
  }

  run_tags = {
    Name = "traceloom-runner-build"
  }
}

build {
  sources = ["source.amazon-ebs.runner"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/traceloom-harness /tmp/traceloom-files"]
  }

  provisioner "file" {
    source      = "${local.harness_dir}/"
    destination = "/tmp/traceloom-harness"
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/traceloom-files"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }} all"
    environment_vars = [
      "PROVISION_MODE=image",
      "HARNESS_SRC=/tmp/traceloom-harness",
      "FILES_SRC=/tmp/traceloom-files",
      "NODE_VERSION=${var.node_version}",
      "PLAYWRIGHT_VERSION=${var.playwright_version}",
    ]
  }

  # One chain, so that the manifest is written before it is read.
  post-processors {
    post-processor "manifest" {
      output     = "${path.root}/manifest.json"
      strip_path = true
    }

    post-processor "shell-local" {
      inline = [
        "${path.root}/publish-ami.sh ${path.root}/manifest.json ${var.region} ${var.ssm_parameter_name} ${var.publish ? "" : "--dry-run"}",
      ]
    }
  }
}
