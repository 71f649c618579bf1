#!/bin/sh
# TraceLoom's harness: what the control plane runs on a host over SSH.
#
#   traceloom-harness.sh start SHARD_DIR TIMEOUT_S   start the shard, detached
#   traceloom-harness.sh poll SHARD_DIR OFFSET       state line, then new events
#   traceloom-harness.sh stop SHARD_DIR              stop the shard's processes
#   traceloom-harness.sh pack SHARD_DIR              tar of attachments and blob
#   traceloom-harness.sh deps-has DEPS_DIR           exit 0 when deps are there
#   traceloom-harness.sh deps-put DEPS_DIR           unpack a deps tar from stdin
#   traceloom-harness.sh suite-put SUITE DEPS PKG    unpack the repository from
#                                                    stdin, link PKG's node_modules
#
# SHARD_DIR holds suite_path (where the repository is on this host), index
# (the shard's number), workdir (the Playwright config's folder inside the
# repository), args (one spec file per line, relative to the repository,
# optionally followed by a tab and the line of one test),
# env.sh (variables for the tests) and token (marks every process the
# shard starts). Every process of a shard carries TRACELOOM_SHARD=<token> in
# its environment, so the whole tree can be found and stopped even when
# Playwright starts browsers and web servers in sessions of their own.
#
# On an EC2 runner, a root service (runner-image/files/traceloom-notices.sh)
# writes a Spot interruption notice or a rebalance recommendation from the
# instance metadata to $TRACELOOM_NOTICE_FILE; the shard's runner user may
# not reach the metadata itself. A running shard that sees the notice stops
# at once, keeps what it reported, and copies the notice to SHARD_DIR/notice,
# which poll announces (notice=yes) so the control plane moves the rest.
set -u

NOTICE_FILE=${TRACELOOM_NOTICE_FILE:-/run/traceloom/instance-notice}
NOTICE_INTERVAL_S=${TRACELOOM_NOTICE_INTERVAL_S:-2}

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
    suite=$(cat "$dir/suite_path" 2>/dev/null || echo "$dir/suite")
    [ -d "$suite" ] || die "no suite at $suite"
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

# The folder holding node_modules/.bin/playwright, from $1 upwards.
find_playwright() {
    here=$1
    while :; do
        [ -x "$here/node_modules/.bin/playwright" ] && {
            echo "$here/node_modules/.bin/playwright"
            return 0
        }
        [ "$here" = / ] && return 1
        here=$(dirname "$here")
    done
}

cmd_run() {
    dir=$1
    timeout_s=$2
    token=$(cat "$dir/token")
    suite=$(cat "$dir/suite_path" 2>/dev/null || echo "$dir/suite")
    export TRACELOOM_SHARD="$token"
    export TRACELOOM_EVENTS="$dir/events.jsonl"
    export TRACELOOM_ATTACHMENTS="$dir/attachments.list"
    TRACELOOM_SHARD_DIR=$(cd "$dir" && pwd -P)
    export TRACELOOM_SHARD_DIR
    export PLAYWRIGHT_BLOB_OUTPUT_DIR="$dir/blob"
    export PLAYWRIGHT_BLOB_OUTPUT_NAME="report-$(cat "$dir/index" 2>/dev/null || echo 0).zip"
    export CI=1 FORCE_COLOR=0 PW_TEST_HTML_REPORT_OPEN=never

    (
        sleep "$timeout_s"
        echo "shard ran past its ${timeout_s}s timeout" >"$dir/timed_out"
        kill_shard "$token"
    ) &
    watchdog=$!
    (
        # Its naps are not the shard's processes: stopping the shard must
        # not find a new one every round. Stopped itself, it ends its nap.
        unset TRACELOOM_SHARD
        nap=
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        while [ ! -s "$NOTICE_FILE" ]; do
            sleep "$NOTICE_INTERVAL_S" &
            nap=$!
            wait "$nap"
        done
        cp "$NOTICE_FILE" "$dir/notice.tmp" && mv "$dir/notice.tmp" "$dir/notice"
        # The watchdog first: its sleep is one of the shard's processes, and
        # it must not take the stop for a timeout.
        kill "$watchdog" 2>/dev/null
        kill_shard "$token"
    ) &
    notice_watch=$!

    date +%s%3N >"$dir/started_ms"
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
    # file becomes /^<escaped absolute path>$/ and matches itself only; a
    # line after a tab narrows it to the test declared on that line.
    tab=$(printf '\t')
    set --
    while IFS= read -r entry; do
        file=${entry%%"$tab"*}
        line=
        [ "$file" != "$entry" ] && line=":${entry#*"$tab"}"
        escaped=$(printf '%s\n' "$real_suite/$file" | sed 's/[][\\.^$*+?(){}|/]/\\&/g')
        set -- "$@" "/^$escaped\$/$line"
    done <"$dir/args"
    code=127
    if [ -s "$NOTICE_FILE" ]; then
        # The instance is already going away: start nothing, say why.
        cp "$NOTICE_FILE" "$dir/notice"
        echo "instance notice: $(cat "$NOTICE_FILE")" >>"$dir/playwright.log"
        code=143
    elif playwright=$(find_playwright "$(pwd)"); then
        # The suite's variables apply to Playwright only, never to the
        # harness's own commands (a suite's PATH cannot break the watchdog).
        (
            # shellcheck disable=SC1091
            [ -f "$dir/env.sh" ] && . "$dir/env.sh"
            exec "$playwright" test --reporter="$HARNESS_DIR/reporter.cjs,blob" \
                --output="$dir/test-results" "$@"
        ) </dev/null >>"$dir/playwright.log" 2>&1
        code=$?
    else
        echo "no node_modules/.bin/playwright at or above $(pwd)" >>"$dir/playwright.log"
    fi

    kill "$watchdog" "$notice_watch" 2>/dev/null
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
    notice=no
    [ -f "$dir/notice" ] && notice=yes
    started=$(cat "$dir/started_ms" 2>/dev/null || echo -)
    echo "state=$state exit=$code timed_out=$timed_out started=$started notice=$notice"
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
    cd "$dir" || exit 2
    [ -d blob ] && find blob -type f -print0 >>attachments.list
    tar -c --null --ignore-failed-read -T attachments.list 2>/dev/null
    return 0
}

cmd_suite_put() {
    suite=$1
    deps=$2
    package=$3
    [ -f "$suite.complete" ] && cat >/dev/null && exit 0
    parent=$(dirname "$suite")
    mkdir -p "$parent"
    tmp=$(mktemp -d "$parent/.incoming.XXXXXX")
    tar -x -C "$tmp" || { rm -rf "$tmp"; die "could not unpack the suite"; }
    ln -sfn "$deps/node_modules" "$tmp/${package:-.}/node_modules"
    # Two shards of a run on one host may both send it; the first one wins.
    if mv -T "$tmp" "$suite" 2>/dev/null; then
        touch "$suite.complete"
    else
        rm -rf "$tmp"
    fi
    [ -d "$suite" ] || die "suite not in place at $suite"
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
suite-put) cmd_suite_put "$@" ;;
*) die "unknown command $command" ;;
esac
