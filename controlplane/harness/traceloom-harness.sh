#!/bin/sh
# TraceLoom's harness: what the control plane runs on a host over SSH.
#
#   traceloom-harness.sh start SHARD_DIR TIMEOUT_S   start the shard, detached
#   traceloom-harness.sh poll SHARD_DIR OFFSET       state line, then new events
#   traceloom-harness.sh stop SHARD_DIR              stop the shard's processes
#   traceloom-harness.sh pack SHARD_DIR              tar of the attachments
#   traceloom-harness.sh deps-has DEPS_DIR           exit 0 when deps are there
#   traceloom-harness.sh deps-put DEPS_DIR           unpack a deps tar from stdin
#
# SHARD_DIR holds suite/ (the repository), workdir (the Playwright config's
# folder inside it), args (one spec file per line, relative to suite/),
# env.sh (variables for the tests) and token (marks every process the
# shard starts). Every process of a shard carries TRACELOOM_SHARD=<token> in
# its environment, so the whole tree can be found and stopped even when
# Playwright starts browsers and web servers in sessions of their own.
set -u

HARNESS_DIR=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "traceloom-harness: $*" >&2
    exit 2
}

# Print the pids whose environment holds TRACELOOM_SHARD=$1, except $2.
# /proc/PID/environ is the environment a process was exec'd with, so this
# shell and its subshells (the watchdog) never match: only what they start.
shard_pids() {
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$pid" = "$2" ] && continue
        if tr '\0' '\n' <"$proc/environ" 2>/dev/null | grep -qxF "TRACELOOM_SHARD=$1"; then
            echo "$pid"
        fi
    done
}

# Stop every process of the shard: TERM, a short grace, then KILL until none.
kill_shard() {
    token=$1
    spare=${2:-none}
    pids=$(shard_pids "$token" "$spare")
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    rounds=0
    while [ "$rounds" -lt 20 ]; do
        sleep 0.25
        pids=$(shard_pids "$token" "$spare")
        [ -z "$pids" ] && return 0
        if [ "$rounds" -ge 8 ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null
        fi
        rounds=$((rounds + 1))
    done
}

cmd_start() {
    dir=$1
    timeout_s=$2
    [ -d "$dir/suite" ] || die "no suite in $dir"
    [ -f "$dir/token" ] || die "no token in $dir"
    : >"$dir/events.jsonl"
    : >"$dir/attachments.list"
    echo starting >"$dir/state"
    # setsid and closed descriptors: the shard outlives this SSH session, and
    # nothing it starts can hold the session's channel open.
    setsid sh "$HARNESS_DIR/traceloom-harness.sh" _run "$dir" "$timeout_s" \
        </dev/null >"$dir/harness.log" 2>&1 &
    echo "$!" >"$dir/pid"
    echo started
}

cmd_run() {
    dir=$1
    timeout_s=$2
    token=$(cat "$dir/token")
    suite="$dir/suite"
    export TRACELOOM_SHARD="$token"
    export TRACELOOM_EVENTS="$dir/events.jsonl"
    export TRACELOOM_ATTACHMENTS="$dir/attachments.list"
    export CI=1 FORCE_COLOR=0 PW_TEST_HTML_REPORT_OPEN=never
    # shellcheck disable=SC1091
    [ -f "$dir/env.sh" ] && . "$dir/env.sh"

    (
        sleep "$timeout_s"
        echo "shard ran past its ${timeout_s}s timeout" >"$dir/timed_out"
        kill_shard "$token"
    ) &
    watchdog=$!

    echo running >"$dir/state"
    workdir=$(cat "$dir/workdir" 2>/dev/null || echo .)
    real_suite=$(cd "$suite" && pwd -P)
    export TRACELOOM_SUITE_DIR="$real_suite"
    cd "$suite/$workdir" || exit 2
    if [ -n "${TRACELOOM_CHROMIUM_PATH:-}" ]; then
        node "$HARNESS_DIR/browsers.cjs" "$(pwd)" "$dir/browsers" "$TRACELOOM_CHROMIUM_PATH" \
            >>"$dir/playwright.log" 2>&1 || echo "browser shim failed" >>"$dir/playwright.log"
        export PLAYWRIGHT_BROWSERS_PATH="$dir/browsers"
    fi
    # Playwright reads each file argument as a regular expression searched
    # in the absolute path, so a.spec.ts would also pick xa.spec.ts. Each
    # file becomes /^<escaped absolute path>$/ and matches itself only.
    set --
    while IFS= read -r file; do
        escaped=$(printf '%s\n' "$real_suite/$file" | sed 's/[][\\.^$*+?(){}|/]/\\&/g')
        set -- "$@" "/^$escaped\$/"
    done <"$dir/args"
    ./node_modules/.bin/playwright test --reporter="$HARNESS_DIR/reporter.cjs" "$@" \
        </dev/null >>"$dir/playwright.log" 2>&1
    code=$?

    kill "$watchdog" 2>/dev/null
    # Whatever Playwright left behind (a web server, a stray child) goes too.
    kill_shard "$token" "$$"
    echo "$code" >"$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
    echo done >"$dir/state"
}

cmd_poll() {
    dir=$1
    offset=$2
    state=$(cat "$dir/state" 2>/dev/null || echo missing)
    code=$(cat "$dir/exit_code" 2>/dev/null || echo -)
    timed_out=no
    [ -f "$dir/timed_out" ] && timed_out=yes
    echo "state=$state exit=$code timed_out=$timed_out"
    if [ -f "$dir/events.jsonl" ]; then
        tail -c "+$((offset + 1))" "$dir/events.jsonl" | head -c 4194304
    fi
}

cmd_stop() {
    dir=$1
    [ -f "$dir/token" ] || exit 0
    kill_shard "$(cat "$dir/token")" "$$"
    [ -f "$dir/exit_code" ] || echo 143 >"$dir/exit_code"
    echo done >"$dir/state"
}

cmd_pack() {
    dir=$1
    cd "$dir/suite" || exit 2
    tar -c --null --ignore-failed-read -T "$dir/attachments.list" 2>/dev/null
    return 0
}

cmd_deps_has() {
    [ -f "$1/.complete" ]
}

cmd_deps_put() {
    deps=$1
    [ -f "$deps/.complete" ] && cat >/dev/null && exit 0
    parent=$(dirname "$deps")
    mkdir -p "$parent"
    tmp=$(mktemp -d "$parent/.incoming.XXXXXX")
    tar -x -C "$tmp" || { rm -rf "$tmp"; die "could not unpack dependencies"; }
    touch "$tmp/.complete"
    # Another run may have put the same dependencies meanwhile; either is fine.
    mv -T "$tmp" "$deps" 2>/dev/null || rm -rf "$tmp"
    [ -f "$deps/.complete" ] || die "dependencies not in place at $deps"
}

[ $# -ge 1 ] || die "usage: traceloom-harness.sh COMMAND ARGS"
command=$1
shift
case "$command" in
start) cmd_start "$@" ;;
_run) cmd_run "$@" ;;
poll) cmd_poll "$@" ;;
stop) cmd_stop "$@" ;;
pack) cmd_pack "$@" ;;
deps-has) cmd_deps_has "$@" ;;
deps-put) cmd_deps_put "$@" ;;
*) die "unknown command $command" ;;
esac
