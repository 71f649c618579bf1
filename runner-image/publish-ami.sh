#!/usr/bin/env bash
# Writes the image ID of the last Packer build to the SSM parameter that
# the runner launch template resolves at every launch, so the next runner
# boots from the new image without a Terraform change.
#
# Usage: publish-ami.sh MANIFEST REGION PARAMETER [--dry-run]
#
# MANIFEST is the file Packer's manifest post-processor wrote. With
# --dry-run the aws command is printed instead of run.
# Exit status: 0 published (or printed), 1 no image in the manifest or the
# aws command failed, 2 usage error.

set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ] || { [ $# -eq 4 ] && [ "$4" != --dry-run ]; }; then
    echo "usage: publish-ami.sh MANIFEST REGION PARAMETER [--dry-run]" >&2
    exit 2
fi
manifest=$1
region=$2
parameter=$3

# artifact_id is "REGION:AMI_ID"; take the build of the latest Packer run.
ami_id=$(jq -r '.last_run_uuid as $run
    | [.builds[] | select(.packer_run_uuid == $run)] | last | .artifact_id // ""' "$manifest")
ami_id=${ami_id#*:}
if [[ ! $ami_id =~ ^ami-[0-9a-f]{8,17}$ ]]; then
    echo "publish-ami: no image ID in the last run of $manifest" >&2
    exit 1
fi

command=(aws ssm put-parameter --region "$region" --name "$parameter"
    --type String --data-type aws:ec2:image --value "$ami_id" --overwrite)
if [ "${4:-}" = --dry-run ]; then
    printf '%s\n' "${command[*]}"
else
    "${command[@]}" >/dev/null
    echo "publish-ami: $parameter = $ami_id" >&2
fi
