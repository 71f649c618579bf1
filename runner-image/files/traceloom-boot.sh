#!/usr/bin/env bash
# Runs once per boot of a TraceLoom runner, before sshd starts
# (traceloom-boot.service). It reads the instance's user data from the EC2
# instance metadata service (IMDSv2) and installs what the control plane
# made for this instance:
#
#   {"hostKey": "<OpenSSH ed25519 private key>",
#    "authorizedKey": "ssh-ed25519 AAAA... <comment>"}
#
# hostKey becomes the only SSH host key sshd offers, so the control plane
# knows it before it ever connects; authorizedKey, the public half of the
# run's client key, becomes the runner user's only authorized key. Then the
# runner user is cut off from the metadata service, so that test code
# cannot read the host key back from the user data.
#
# Environment (for tests; the defaults are the real thing):
#   TRACELOOM_IMDS_URL    [http://169.254.169.254]
#   TRACELOOM_SSH_DIR     [/etc/ssh]
#   TRACELOOM_USER        [runner]
#   TRACELOOM_BLOCK_IMDS  1 to add the iptables rule, 0 to leave it [1]

set -euo pipefail

readonly IMDS_URL=${TRACELOOM_IMDS_URL:-http://169.254.169.254}
readonly SSH_DIR=${TRACELOOM_SSH_DIR:-/etc/ssh}
readonly RUNNER=${TRACELOOM_USER:-runner}
readonly BLOCK_IMDS=${TRACELOOM_BLOCK_IMDS:-1}

die() {
    printf 'traceloom-boot: error: %s\n' "$*" >&2
    exit 1
}

# The token PUT is answered only within the instance's hop limit (1 for
# runners), so nothing beyond the instance itself can get one.
fetch_user_data() {
    local token

    token=$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 5 \
        -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
        "$IMDS_URL/latest/api/token") || die "no IMDSv2 token from $IMDS_URL"
    curl -fsS --retry 5 --retry-delay 1 --max-time 10 \
        -H "X-aws-ec2-metadata-token: $token" \
        "$IMDS_URL/latest/user-data" || die "no user data at $IMDS_URL"
}

# Print the non-empty string field $1 of the JSON document $2.
field() {
    jq -er --arg name "$1" '.[$name] | strings | select(length > 0)' <<<"$2" ||
        die "user data has no \"$1\" string"
}

install_host_key() {
    local key=$1 staged

    staged=$(mktemp "$SSH_DIR/.traceloom-host-key.XXXXXX")
    printf '%s\n' "$key" >"$staged"
    chmod 0600 "$staged"
    if ! ssh-keygen -y -P '' -f "$staged" >"$staged.pub" 2>/dev/null; then
        rm -f "$staged" "$staged.pub"
        die "hostKey is not an unencrypted OpenSSH private key"
    fi
    if [ "$(cut -d' ' -f1 "$staged.pub")" != ssh-ed25519 ]; then
        rm -f "$staged" "$staged.pub"
        die "hostKey is not an ed25519 key"
    fi

    rm -f "$SSH_DIR"/ssh_host_*_key "$SSH_DIR"/ssh_host_*_key.pub
    chmod 0644 "$staged.pub"
    mv "$staged.pub" "$SSH_DIR/ssh_host_ed25519_key.pub"
    mv "$staged" "$SSH_DIR/ssh_host_ed25519_key"
}

# Name the one host key explicitly: once HostKey is set, sshd loads no
# other key, even if one appears later.
restrict_sshd_to_host_key() {
    local drop_in=$SSH_DIR/sshd_config.d/05-traceloom-hostkey.conf

    install -d -m 0755 "$SSH_DIR/sshd_config.d"
    {
        echo "# Written by traceloom-boot: the host key the control plane made"
        echo "# for this instance is the only one sshd offers."
        echo "HostKey $SSH_DIR/ssh_host_ed25519_key"
        echo "HostKeyAlgorithms ssh-ed25519"
    } >"$drop_in"
    chmod 0644 "$drop_in"
}

install_authorized_key() {
    local key=$1 home staged

    case $key in
        *$'\n'*) die "authorizedKey must be a single line" ;;
    esac
    home=$(getent passwd "$RUNNER" | cut -d: -f6) || die "user $RUNNER does not exist"
    install -d -m 0700 -o "$RUNNER" -g "$RUNNER" "$home/.ssh"
    staged=$(mktemp "$home/.ssh/.authorized_keys.XXXXXX")
    printf '%s\n' "$key" >"$staged"
    if [ "${key%% *}" != ssh-ed25519 ] || ! ssh-keygen -l -f "$staged" >/dev/null 2>&1; then
        rm -f "$staged"
        die "authorizedKey is not an ssh-ed25519 public key"
    fi
    chown "$RUNNER:$RUNNER" "$staged"
    chmod 0600 "$staged"
    mv "$staged" "$home/.ssh/authorized_keys"
}

block_imds_for_runner() {
    local uid

    [ "$BLOCK_IMDS" = 1 ] || return 0
    command -v iptables >/dev/null || die "iptables is missing; cannot keep $RUNNER away from IMDS"
    uid=$(id -u "$RUNNER")
    iptables -C OUTPUT -d 169.254.169.254 -m owner --uid-owner "$uid" -j REJECT 2>/dev/null ||
        iptables -A OUTPUT -d 169.254.169.254 -m owner --uid-owner "$uid" -j REJECT
}

main() {
    local user_data

    umask 077
    user_data=$(fetch_user_data)
    jq -e 'type == "object"' >/dev/null 2>&1 <<<"$user_data" || die "user data is not a JSON object"
    install_host_key "$(field hostKey "$user_data")"
    restrict_sshd_to_host_key
    install_authorized_key "$(field authorizedKey "$user_data")"
    block_imds_for_runner
    printf 'traceloom-boot: installed the host key and the client key for %s\n' "$RUNNER" >&2
}

main "$@"
