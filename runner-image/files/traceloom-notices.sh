#!/usr/bin/env bash
# Runs as root for the life of a TraceLoom runner (traceloom-notices.service)
# and relays what the EC2 instance metadata service (IMDSv2) says about the
# instance going away: a Spot interruption notice
# (meta-data/spot/instance-action) or a rebalance recommendation
# (meta-data/events/recommendations/rebalance). The first one seen is
# written, as one line, to the notice file, which the harness of a running
# shard watches: it stops the shard, keeps what it reported, and tells the
# control plane, which moves the unfinished tests to another host.
#
# The runner user cannot reach the metadata service itself (traceloom-boot
# blocks it, so that test code never reads the host key in the user data);
# this relay is how the harness hears of notices.
#
# Environment (for tests; the defaults are the real thing):
#   TRACELOOM_IMDS_URL           [http://169.254.169.254]
#   TRACELOOM_NOTICE_FILE        [/run/traceloom/instance-notice]
#   TRACELOOM_NOTICE_INTERVAL_S  seconds between looks [5]

set -uo pipefail

readonly IMDS_URL=${TRACELOOM_IMDS_URL:-http://169.254.169.254}
readonly NOTICE_FILE=${TRACELOOM_NOTICE_FILE:-/run/traceloom/instance-notice}
readonly INTERVAL_S=${TRACELOOM_NOTICE_INTERVAL_S:-5}
readonly TOKEN_TTL_S=21600

token=""
token_at=0

log() {
    printf 'traceloom-notices: %s\n' "$*" >&2
}

# A fresh IMDSv2 token when the one held is more than half its life old.
refresh_token() {
    local now

    now=$(date +%s)
    if [ -n "$token" ] && [ $((now - token_at)) -lt $((TOKEN_TTL_S / 2)) ]; then
        return 0
    fi
    token=$(curl -fsS --max-time 2 -X PUT \
        -H "X-aws-ec2-metadata-token-ttl-seconds: $TOKEN_TTL_S" \
        "$IMDS_URL/latest/api/token") || {
        token=""
        return 1
    }
    token_at=$now
}

# Print the metadata at path $1; fail when it is absent (404) or unreachable.
metadata() {
    curl -fsS --max-time 2 -H "X-aws-ec2-metadata-token: $token" \
        "$IMDS_URL/latest/meta-data/$1"
}

# One line describing the notice in force, if any.
current_notice() {
    local body

    if body=$(metadata spot/instance-action); then
        printf 'spot-interruption %s\n' "$(jq -r '"\(.action // "terminate") at \(.time // "unknown")"' <<<"$body" 2>/dev/null || echo "$body")"
        return 0
    fi
    if body=$(metadata events/recommendations/rebalance); then
        printf 'rebalance-recommendation at %s\n' "$(jq -r '.noticeTime // "unknown"' <<<"$body" 2>/dev/null || echo "$body")"
        return 0
    fi
    return 1
}

write_notice() {
    local staged

    install -d -m 0755 "$(dirname "$NOTICE_FILE")"
    staged=$(mktemp "$NOTICE_FILE.XXXXXX")
    printf '%s\n' "$1" >"$staged"
    chmod 0644 "$staged"
    mv "$staged" "$NOTICE_FILE"
    log "notice: $1"
}

main() {
    local notice

    while :; do
        if refresh_token && notice=$(current_notice); then
            # Only the first notice counts; a later one changes nothing.
            [ -s "$NOTICE_FILE" ] || write_notice "$notice"
        fi
        sleep "$INTERVAL_S"
    done
}

main "$@"
