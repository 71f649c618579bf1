#!/usr/bin/env bash
# Prepares a machine to be a TraceLoom runner: Node.js, Playwright's
# browsers and their system libraries, the harness, a `runner` user and a
# hardened sshd. Packer runs it on the image build instance
# (PROVISION_MODE=image); an operator runs it on an on-prem host
# (PROVISION_MODE=onprem, the default). Every step can be run again.
#
# Usage: provision.sh [STEP...]
#
#   all         every step below that the mode calls for (the default)
#   base        Debian/Ubuntu packages the other steps need
#   user        the account that runs the harness ($TRACELOOM_USER)
#   node        Node.js $NODE_VERSION under $TRACELOOM_PREFIX
#   playwright  @playwright/test $PLAYWRIGHT_VERSION, its system
#               dependencies and Chromium, Firefox and WebKit
#   harness     the harness from $HARNESS_SRC into $TRACELOOM_PREFIX/harness;
#               the only step that runs without root (for yourself)
#   ssh         sshd: keys only, no root login
#   boot        image only: the boot service that installs the instance's
#               SSH host key and client key from user data, and the service
#               that relays Spot interruption notices to the harness
#   seal        image only, last: removes SSH host keys, authorized_keys
#               and cloud-init state before the snapshot
#
# Environment (defaults in brackets):
#
#   PROVISION_MODE         image | onprem [onprem]
#   TRACELOOM_PREFIX       install prefix [/opt/traceloom]
#   TRACELOOM_USER         account that runs the harness [runner]
#   HARNESS_SRC            folder whose contents become the harness
#                          [../controlplane/harness next to this script]
#   FILES_SRC              folder with traceloom-boot.sh and its unit
#                          [files/ next to this script]
#   NODE_VERSION           [20.20.2]
#   NODE_DIST_URL          where Node.js release tarballs and their
#                          SHASUMS256.txt are fetched [https://nodejs.org/dist]
#   PLAYWRIGHT_VERSION     [1.65.2]; suites should pin the same version
#   RUNNER_AUTHORIZED_KEY  onprem: the control plane's public key, added to
#                          the runner's authorized_keys
#
# Exit status: 0 on success, 1 on a failed step, 2 on a usage error.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

readonly MODE=${PROVISION_MODE:-onprem}
readonly PREFIX=${TRACELOOM_PREFIX:-/opt/traceloom}
readonly RUNNER=${TRACELOOM_USER:-runner}
readonly BROWSERS_PATH=$PREFIX/browsers
readonly NODE_VERSION=${NODE_VERSION:-20.20.2}
readonly NODE_DIST_URL=${NODE_DIST_URL:-https://nodejs.org/dist}
readonly PLAYWRIGHT_VERSION=${PLAYWRIGHT_VERSION:-1.65.2}
readonly SSHD_DROP_IN=/etc/ssh/sshd_config.d/10-traceloom.conf

log() {
    printf 'provision: %s\n' "$*" >&2
}

die() {
    printf 'provision: error: %s\n' "$*" >&2
    exit 1
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "step '$1' needs root"
}

# Set KEY="value" in /etc/environment, which pam_env reads for SSH sessions.
set_system_environment() {
    local key=$1 value=$2

    touch /etc/environment
    sed -i "/^$key=/d" /etc/environment
    printf '%s="%s"\n' "$key" "$value" >>/etc/environment
}

step_base() {
    require_root base
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        ca-certificates curl iptables jq openssh-server xz-utils
}

step_user() {
    local home

    require_root user
    if ! id "$RUNNER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash --comment "TraceLoom runner" "$RUNNER"
        log "created user $RUNNER"
    fi
    home=$(getent passwd "$RUNNER" | cut -d: -f6)
    install -d -m 0700 -o "$RUNNER" -g "$RUNNER" "$home/.ssh"

    if [ -n "${RUNNER_AUTHORIZED_KEY:-}" ]; then
        local keys=$home/.ssh/authorized_keys
        touch "$keys"
        grep -qxF "$RUNNER_AUTHORIZED_KEY" "$keys" || printf '%s\n' "$RUNNER_AUTHORIZED_KEY" >>"$keys"
        chown "$RUNNER:$RUNNER" "$keys"
        chmod 0600 "$keys"
    fi
}

node_arch() {
    case $(uname -m) in
        x86_64) echo x64 ;;
        aarch64) echo arm64 ;;
        *) die "no Node.js build for $(uname -m)" ;;
    esac
}

step_node() {
    local name dest tmp

    require_root node
    name=node-v$NODE_VERSION-linux-$(node_arch)
    dest=$PREFIX/$name
    if [ -x "$dest/bin/node" ] && [ "$("$dest/bin/node" --version)" = "v$NODE_VERSION" ]; then
        log "node v$NODE_VERSION already installed"
    else
        tmp=$(mktemp -d)
        curl -fsSL --retry 3 -o "$tmp/$name.tar.xz" "$NODE_DIST_URL/v$NODE_VERSION/$name.tar.xz"
        curl -fsSL --retry 3 -o "$tmp/SHASUMS256.txt" "$NODE_DIST_URL/v$NODE_VERSION/SHASUMS256.txt"
        (cd "$tmp" && grep " $name.tar.xz\$" SHASUMS256.txt | sha256sum --check --status) ||
            die "checksum of $name.tar.xz does not match SHASUMS256.txt"
        rm -rf "$dest.partial"
        mkdir -p "$dest.partial"
        tar -xJf "$tmp/$name.tar.xz" -C "$dest.partial" --strip-components=1 --no-same-owner
        rm -rf "$dest"
        mv "$dest.partial" "$dest"
        rm -rf "$tmp"
        log "installed node v$NODE_VERSION into $dest"
    fi

    ln -sfn "$dest" "$PREFIX/node"
    for bin in node npm npx; do
        ln -sfn "$PREFIX/node/bin/$bin" "/usr/local/bin/$bin"
    done
}

step_playwright() {
    local dir=$PREFIX/playwright

    require_root playwright
    command -v npx >/dev/null || die "npx not found; run the node step first"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || printf '{ "private": true }\n' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --save-exact \
        "@playwright/test@$PLAYWRIGHT_VERSION"
    (
        cd "$dir"
        PLAYWRIGHT_BROWSERS_PATH=$BROWSERS_PATH \
            npx --no-install playwright install --with-deps chromium firefox webkit
    )
    chmod -R a+rX "$BROWSERS_PATH"
    set_system_environment PLAYWRIGHT_BROWSERS_PATH "$BROWSERS_PATH"
    log "installed Playwright $PLAYWRIGHT_VERSION browsers into $BROWSERS_PATH"
}

# Copy the harness into $PREFIX/harness: folders 0755, files 0644, shell
# scripts and files that were executable 0755, owned by root (so that the
# runner cannot change it) or, without root, by whoever runs this.
step_harness() {
    local src=${HARNESS_SRC:-$SCRIPT_DIR/../controlplane/harness}
    local target=$PREFIX/harness staging old

    [ -d "$src" ] || die "harness source '$src' is not a folder (set HARNESS_SRC)"
    id "$RUNNER" >/dev/null 2>&1 || die "user '$RUNNER' does not exist (set TRACELOOM_USER)"
    if [ "$(id -u)" -ne 0 ] && [ "$(id -un)" != "$RUNNER" ]; then
        die "as $(id -un) the harness can only be installed for yourself; run as root to install it for $RUNNER"
    fi
    mkdir -p "$PREFIX" 2>/dev/null || die "cannot create $PREFIX as $(id -un)"
    [ -w "$PREFIX" ] || die "$PREFIX is not writable by $(id -un)"

    staging=$(mktemp -d "$PREFIX/.harness.XXXXXX")
    cp -R "$src/." "$staging/"
    find "$staging" -depth -name __pycache__ -type d -exec rm -rf {} +
    find "$staging" -type d -exec chmod 0755 {} +
    find "$staging" -type f \( -perm -u+x -o -name '*.sh' \) -exec chmod 0755 {} +
    find "$staging" -type f ! -perm -u+x -exec chmod 0644 {} +
    [ "$(id -u)" -ne 0 ] || chown -R root:root "$staging"

    if [ -e "$target" ]; then
        old=$(mktemp -u "$PREFIX/.harness-old.XXXXXX")
        mv "$target" "$old"
        mv "$staging" "$target"
        rm -rf "$old"
    else
        mv "$staging" "$target"
    fi

    # The harness writes shard output here; only its user can read it.
    install -d -m 0750 "$PREFIX/work"
    [ "$(id -u)" -ne 0 ] || chown "$RUNNER:$RUNNER" "$PREFIX/work"
    log "installed the harness from $src into $target"
}

step_ssh() {
    require_root ssh
    [ -f /etc/ssh/sshd_config ] || die "no /etc/ssh/sshd_config; install openssh-server (base step)"
    if ! grep -qE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config; then
        sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
    fi
    install -d -m 0755 /etc/ssh/sshd_config.d
    # sshd keeps the first value it reads for a keyword, and this file sorts
    # before the 50-cloud-init.conf that may allow passwords.
    cat >"$SSHD_DROP_IN" <<'EOF'
# Written by TraceLoom's provision.sh: keys only, never root.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PubkeyAuthentication yes
X11Forwarding no
EOF
    chmod 0644 "$SSHD_DROP_IN"
    install -d -m 0755 /run/sshd
    sshd -t || die "sshd rejects its configuration"
    if systemctl is-active --quiet ssh.service 2>/dev/null; then
        systemctl reload ssh.service
    fi
    log "sshd accepts keys only and no root login"
}

step_boot() {
    local files=${FILES_SRC:-$SCRIPT_DIR/files}

    require_root boot
    [ "$MODE" = image ] || die "the boot service reads EC2 user data; it is for PROVISION_MODE=image only"
    install -m 0755 "$files/traceloom-boot.sh" /usr/local/sbin/traceloom-boot
    install -m 0644 "$files/traceloom-boot.service" /etc/systemd/system/traceloom-boot.service
    install -m 0755 "$files/traceloom-notices.sh" /usr/local/sbin/traceloom-notices
    install -m 0644 "$files/traceloom-notices.service" /etc/systemd/system/traceloom-notices.service

    # Host keys come from the boot service, never from cloud-init.
    install -d -m 0755 /etc/cloud/cloud.cfg.d
    cat >/etc/cloud/cloud.cfg.d/99-traceloom.cfg <<'EOF'
# Written by TraceLoom's provision.sh: traceloom-boot.service installs the
# SSH host key that the control plane generated for this instance.
ssh_deletekeys: false
ssh_genkeytypes: []
disable_root: true
EOF

    # Ubuntu 24.04 starts sshd on the first connection (ssh.socket), which
    # would let a connection in before the boot service has put the host key
    # in place. Start sshd as a plain service, ordered after the boot service.
    if systemctl cat ssh.socket >/dev/null 2>&1; then
        systemctl disable ssh.socket
        rm -f /etc/systemd/system/ssh.service.d/00-socket.conf \
            /etc/systemd/system/ssh.socket.d/addresses.conf
    fi
    systemctl daemon-reload
    systemctl enable ssh.service traceloom-boot.service traceloom-notices.service
    log "installed traceloom-boot.service and traceloom-notices.service"
}

step_seal() {
    require_root seal
    [ "$MODE" = image ] || die "seal removes this host's SSH keys; it runs only with PROVISION_MODE=image"
    rm -f /etc/ssh/ssh_host_*
    find /root /home -name authorized_keys -path '*/.ssh/*' -delete
    if command -v cloud-init >/dev/null; then
        cloud-init clean --logs
    fi
    truncate -s 0 /etc/machine-id
    rm -rf /tmp/traceloom-harness /tmp/traceloom-files
    apt-get clean
    log "sealed: no host keys, no authorized keys, no cloud-init state"
}

step_all() {
    step_base
    step_user
    step_node
    step_playwright
    step_harness
    step_ssh
    if [ "$MODE" = image ]; then
        step_boot
        step_seal
    fi
}

main() {
    local step

    case $MODE in
        image | onprem) ;;
        *)
            printf 'provision: PROVISION_MODE must be image or onprem, not %s\n' "$MODE" >&2
            exit 2
            ;;
    esac
    [ $# -gt 0 ] || set -- all
    for step in "$@"; do
        case $step in
            all | base | user | node | playwright | harness | ssh | boot | seal) "step_$step" ;;
            *)
                printf 'provision: unknown step %s (see the header of %s)\n' "$step" "$0" >&2
                exit 2
                ;;
        esac
    done
}

main "$@"
