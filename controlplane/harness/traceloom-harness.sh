#!/bin/sh
# TraceLoom's harness: what the control plane runs on a host over SSH.
#
#   traceloom-harness.sh start SHARD_DIR TIMEOUT_S   start the shard, detached
#   traceloom-harness.sh poll SHARD_DIR OFFSET [WAIT_MS STATE]
#                                                    state line, then new events;
#                                                    first waits up to WAIT_MS
#                                                    while the state is STATE
#   traceloom-harness.sh stop SHARD_DIR              stop the shard's processes
#   traceloom-harness.sh pack SHARD_DIR              tar of attachments and blob
#   traceloom-harness.sh upload SHARD_DIR PREFIX     post them to a presigned S3
#                                                    upload, each under PREFIX
#   traceloom-harness.sh deps-put DEPS_DIR           unpack a deps tar from stdin
#   traceloom-harness.sh suite-put SUITE DEPS PKG    unpack the repository from
#                                                    stdin, link PKG's node_modules
#
# SHARD_DIR holds suite_path (where the repository is on this host), index
# (the shard's number), workdir (the Playwright config's folder inside the
# repository), args (one spec file per line, relative to the repository,
# optionally followed by a tab and the line of one test),
# env.sh (variables for the tests), token (marks every process the shard
# starts), and optionally deps_path (the dependencies, whose bin/ holds the
# suite's package manager), projects (Playwright projects to run, one a
# line), mode ("list": run the setup steps and list the tests; "setup":
# only run the setup steps), pass_with_no_tests (a run that finds no test
# passes: a batch sent before the listing ended) and secrets.sh (the run's
# secrets, read once and deleted); stop leaves a "stopping" mark there. SUITE.setup.sh, next to the repository,
# holds the traceloom.yml setup steps: they run once per repository copy,
# before its first Playwright, and SUITE.setup-ok / SUITE.setup-failed
# record how they ended, SUITE.setup.log what they printed. Every process of a shard carries TRACELOOM_SHARD=<token> in
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
# prctl(PR_SET_CHILD_SUBREAPER, 1), then exec the rest of the arguments.
SUBREAPER='import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
os.execvp(sys.argv[1], sys.argv[1:])'

die() {
    echo "traceloom-harness: $*" >&2
    exit 2
}

# Print the pids whose environment holds TRACELOOM_SHARD=$1, except $2.
# /proc/PID/environ is the environment a process was exec'd with, so this
# shell and its subshells (the watchdog) never match: only what they start.
# One grep reads every environ file (NUL-separated lines); files of
# processes that just exited, or of other users, are skipped quietly.
shard_pids() {
    grep -lsxzF "TRACELOOM_SHARD=$1" /proc/[0-9]*/environ 2>/dev/null |
        sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' |
        grep -vxF "$2"
    return 0
}

# Print the live (not zombie) descendants of pid $1, except pids $2 and $3
# and their own descendants. A child that cleared its environment has no
# marker, but it is still below the harness: the harness runs as a child
# subreaper (see cmd_start), so even an orphan is re-parented to it, not to
# init.
descendants() {
    [ -n "$1" ] || return 0
    # One cat for every stat file: it goes on past those that vanish.
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" \
        -v spare="${2:-none}" -v self="${3:-none}" '
        {
            pid = $1
            sub(/.*\) /, "")
            if ($1 != "Z") kids[$2] = kids[$2] " " pid
        }
        END {
            queue = root
            while (queue != "") {
                n = split(queue, parents, " ")
                queue = ""
                for (i = 1; i <= n; i++) {
                    m = split(kids[parents[i]], found, " ")
                    for (j = 1; j <= m; j++) {
                        if (found[j] == spare || found[j] == self) continue
                        print found[j]
                        queue = queue " " found[j]
                    }
                }
            }
        }'
}

# The shard's processes: those carrying its marker, and every descendant of
# its harness process $3 (when given) but $2. Always called in a command
# substitution, whose subshell and what it starts to look are not the
# shard's: they lose the marker and are left out of the tree, or a stop
# would find them every round and wait out its whole grace.
shard_tree() {
    unset TRACELOOM_SHARD
    looking=$(exec sh -c 'echo "$PPID"')
    {
        shard_pids "$1" "$2"
        descendants "${3:-}" "$2" "$looking"
    } | sort -u
}

# Stop every process of the shard: TERM, a short grace, then KILL until none.
# Arguments: the token, a pid to spare (the caller), the harness's pid.
# Leaves in stop_checks how many looks after the TERM it took (0: nothing
# was left), which the harness's log reports.
kill_shard() {
    token=$1
    spare=${2:-none}
    root=${3:-}
    stop_checks=0
    pids=$(shard_tree "$token" "$spare" "$root")
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    while [ "$stop_checks" -lt 20 ]; do
        sleep 0.25
        stop_checks=$((stop_checks + 1))
        pids=$(shard_tree "$token" "$spare" "$root")
        [ -z "$pids" ] && return 0
        if [ "$stop_checks" -gt 8 ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null
        fi
    done
}

# Sleep $1 seconds so that a TERM to this (sub)shell ends the sleep too:
# a stopped watchdog must leave no sleep behind, or the stop after the
# shard finds it and waits out a grace for nothing.
nap() {
    sleep "$1" &
    nap_pid=$!
    trap 'kill "$nap_pid" 2>/dev/null; exit 0' TERM
    wait "$nap_pid"
    trap - TERM
}

cmd_start() {
    dir=$1
    timeout_s=$2
    suite=$(cat "$dir/suite_path" 2>/dev/null || echo "$dir/suite")
    [ -d "$suite" ] || die "no suite at $suite"
    [ -f "$dir/token" ] || die "no token in $dir"
    : >"$dir/events.jsonl"
    : >"$dir/attachments.list"
    # Who started the shard, for whoever must stop it later (a static host
    # cleaned up at the end of its run).
    echo "$HARNESS_DIR" >"$dir/harness_dir"
    echo starting >"$dir/state"
    # setsid and closed descriptors: the shard outlives this SSH session, and
    # nothing it starts can hold the session's channel open. Where python3
    # is there, the harness also becomes a child subreaper (Linux keeps the
    # flag across exec), so orphans of the shard stay below it.
    set -- sh "$HARNESS_DIR/traceloom-harness.sh" _run "$dir" "$timeout_s"
    if command -v python3 >/dev/null 2>&1; then
        set -- python3 -I -S -c "$SUBREAPER" "$@"
    fi
    setsid "$@" </dev/null >"$dir/harness.log" 2>&1 &
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

# PATH for the suite's commands: its package manager, then every
# node_modules/.bin from the config's folder up to the repository (as npx
# and npm scripts have it), then the host's.
suite_path_var() {
    here=$1
    top=$2
    deps=$3
    bins=
    while :; do
        [ -d "$here/node_modules/.bin" ] && bins="$bins$here/node_modules/.bin:"
        [ "$here" = "$top" ] || [ "$here" = / ] && break
        here=$(dirname "$here")
    done
    [ -n "$deps" ] && [ -d "$deps/bin" ] && bins="$deps/bin:$bins"
    echo "$bins$PATH"
}

# The suite's PATH, the variables of the run, then its secrets.
load_suite_env() {
    PATH=$suite_path
    export PATH
    # shellcheck disable=SC1091
    [ -f "$1/env.sh" ] && . "$1/env.sh"
    # shellcheck disable=SC1091
    [ -f "$1/secrets.sh" ] && . "$1/secrets.sh"
    return 0
}

# One setup step: its number for the report, a header, then the command.
traceloom_step() {
    echo "$1" >"$setup_step"
    printf '\n$ %s\n' "$3"
    if command -v bash >/dev/null 2>&1; then
        (cd "$real_suite/$2" && exec bash -c "$3")
    else
        (cd "$real_suite/$2" && exec sh -c "$3")
    fi
}

# Run SUITE.setup.sh once for this copy of the repository. Returns 0 when
# the steps passed (now or before), 1 when they failed.
run_setup() {
    suite=$1
    timeout_s=$2
    [ -f "$suite.setup.sh" ] || return 0
    [ -f "$suite.setup-ok" ] && return 0
    [ -f "$suite.setup-failed" ] && return 1
    echo setup >"$dir/state"
    setup_step="$suite.setup-step"
    : >"$suite.setup.log"
    started=$(date +%s%3N)
    (
        nap "$timeout_s"
        echo "setup ran past its ${timeout_s}s timeout" >"$suite.setup-timed-out"
        kill_shard "$token"
    ) &
    setup_watchdog=$!
    (
        [ -f "$dir/stopping" ] && exit 143
        load_suite_env "$dir"
        # shellcheck disable=SC1090
        . "$suite.setup.sh"
    ) </dev/null >>"$suite.setup.log" 2>&1
    code=$?
    kill "$setup_watchdog" 2>/dev/null
    wait "$setup_watchdog" 2>/dev/null
    kill_shard "$token" "$$"
    if [ -f "$dir/stopping" ]; then
        # Stopped from outside (a cancel, or a batch dropped before its
        # tests): the steps did not fail, and the next batch runs them.
        return 1
    fi
    echo "$(($(date +%s%3N) - started))" >"$suite.setup-ms"
    if [ "$code" -eq 0 ]; then
        touch "$suite.setup-ok"
        return 0
    fi
    echo "$code" >"$suite.setup-failed"
    return 1
}

cmd_run() {
    dir=$1
    timeout_s=$2
    token=$(cat "$dir/token")
    suite=$(cat "$dir/suite_path" 2>/dev/null || echo "$dir/suite")
    deps=$(cat "$dir/deps_path" 2>/dev/null || true)
    mode=$(cat "$dir/mode" 2>/dev/null || echo run)
    export TRACELOOM_SHARD="$token"
    export TRACELOOM_EVENTS="$dir/events.jsonl"
    export TRACELOOM_ATTACHMENTS="$dir/attachments.list"
    TRACELOOM_SHARD_DIR=$(cd "$dir" && pwd -P)
    export TRACELOOM_SHARD_DIR
    export PLAYWRIGHT_BLOB_OUTPUT_DIR="$dir/blob"
    index=$(cat "$dir/index" 2>/dev/null || echo 0)
    export PLAYWRIGHT_BLOB_OUTPUT_NAME="report-$index.zip"
    # An html reporter in the suite's config must never wait to open a browser.
    export CI=1 FORCE_COLOR=0 PW_TEST_HTML_REPORT_OPEN=never PLAYWRIGHT_HTML_OPEN=never

    workdir=$(cat "$dir/workdir" 2>/dev/null || echo .)
    real_suite=$(cd "$suite" && pwd -P)
    export TRACELOOM_SUITE_DIR="$real_suite"
    cd "$suite/$workdir" || exit 2
    here=$(pwd -P)
    # The host's own Playwright browsers, before the shim's folder hides them.
    export TRACELOOM_HOST_BROWSERS_PATH="${PLAYWRIGHT_BROWSERS_PATH:-}"
    node "$HARNESS_DIR/browsers.cjs" "$here" "$dir/browsers" "${TRACELOOM_CHROMIUM_PATH:-}" \
        "$dir/browsers.json" >>"$dir/playwright.log" 2>&1 ||
        echo "browser shim failed" >>"$dir/playwright.log"
    export PLAYWRIGHT_BROWSERS_PATH="$dir/browsers"
    # Only the suite's commands get this PATH, never the harness's own
    # (a package's bin named like a tool cannot break the watchdog).
    suite_path=$(suite_path_var "$here" "$real_suite" "$deps")

    if ! run_setup "$suite" "$timeout_s"; then
        rm -f "$dir/secrets.sh"
        echo 125 >"$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
        echo "done" >"$dir/state"
        return 0
    fi
    if [ "$mode" = setup ]; then
        # Only getting the host ready: the setup steps, no Playwright.
        rm -f "$dir/secrets.sh"
        echo 0 >"$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
        echo "done" >"$dir/state"
        return 0
    fi

    harness_pid=$$
    (
        nap "$timeout_s"
        echo "shard ran past its ${timeout_s}s timeout" >"$dir/timed_out"
        # $$ is the harness's pid in this subshell too; ask a child for ours.
        kill_shard "$token" "$(exec sh -c 'echo "$PPID"')" "$harness_pid"
    ) &
    watchdog=$!
    (
        # Its naps are not the shard's processes: stopping the shard must
        # not find a new one every round. Stopped itself, it ends its nap.
        unset TRACELOOM_SHARD
        while [ ! -s "$NOTICE_FILE" ]; do
            nap "$NOTICE_INTERVAL_S"
        done
        cp "$NOTICE_FILE" "$dir/notice.tmp" && mv "$dir/notice.tmp" "$dir/notice"
        # The watchdog first: it must not take the stop for a timeout.
        kill "$watchdog" 2>/dev/null
        kill_shard "$token"
    ) &
    notice_watch=$!

    date +%s%3N >"$dir/started_ms"
    echo running >"$dir/state"
    # Playwright reads each file argument as a regular expression searched
    # in the absolute path, so a.spec.ts would also pick xa.spec.ts. Each
    # file becomes /^<escaped absolute path>$/ and matches itself only; a
    # line after a tab narrows it to the test declared on that line. One sed
    # escapes every line (a tab and digits have nothing to escape).
    tab=$(printf '\t')
    special='s/[][\\.^$*+?(){}|/]/\\&/g'
    root=$(printf '%s\n' "$real_suite/" | sed "$special")
    sed "$special" "$dir/args" >"$dir/args.escaped"
    set --
    while IFS= read -r entry; do
        file=${entry%%"$tab"*}
        line=
        [ "$file" != "$entry" ] && line=":${entry#*"$tab"}"
        set -- "$@" "/^$root$file\$/$line"
    done <"$dir/args.escaped"
    if [ -f "$dir/projects" ]; then
        while IFS= read -r project; do
            set -- "$@" "--project=$project"
        done <"$dir/projects"
    fi
    if [ "$mode" = list ]; then
        set -- --list --pass-with-no-tests --reporter="$HARNESS_DIR/reporter.cjs" "$@"
    else
        set -- --reporter="$HARNESS_DIR/reporter.cjs,blob" --output="$dir/test-results" "$@"
        [ -f "$dir/pass_with_no_tests" ] && set -- --pass-with-no-tests "$@"
    fi
    code=127
    if [ -s "$NOTICE_FILE" ]; then
        # The instance is already going away: start nothing, say why.
        cp "$NOTICE_FILE" "$dir/notice"
        echo "instance notice: $(cat "$NOTICE_FILE")" >>"$dir/playwright.log"
        code=143
    elif playwright=$(find_playwright "$here"); then
        # The suite's variables apply to Playwright only, never to the
        # harness's own commands (a suite's PATH cannot break the watchdog).
        (
            [ -f "$dir/stopping" ] && exit 143
            load_suite_env "$dir"
            rm -f "$dir/secrets.sh"
            exec "$playwright" test "$@"
        ) </dev/null >>"$dir/playwright.log" 2>&1
        code=$?
    else
        echo "no node_modules/.bin/playwright at or above $here" >>"$dir/playwright.log"
    fi
    rm -f "$dir/secrets.sh"

    kill "$watchdog" "$notice_watch" 2>/dev/null
    wait "$watchdog" "$notice_watch" 2>/dev/null
    # Whatever Playwright left behind (a web server, a stray child) goes too.
    kill_shard "$token" "$$" "$$"
    echo "leftovers stopped after $stop_checks checks" >&2
    echo "$code" >"$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
    echo "done" >"$dir/state"
}

cmd_poll() {
    dir=$1
    offset=$2
    wait_ms=${3:-0}
    seen=${4:-}
    case $wait_ms in '' | *[!0-9]* | ?????????*) wait_ms=0 ;; esac
    # A long poll: while the shard's state is still the one the caller saw,
    # wait here (a builtin read and a short sleep a round) for up to
    # WAIT_MS, so the caller learns of a change within a tenth of a second
    # without asking over SSH ten times a second. A sleep that takes whole
    # seconds only makes the rounds a second long.
    while [ "$wait_ms" -gt 0 ]; do
        now=missing
        [ -f "$dir/state" ] && { read -r now <"$dir/state" || now=; }
        [ "$now" = "$seen" ] || break
        if sleep 0.1 2>/dev/null; then
            wait_ms=$((wait_ms - 100))
        else
            sleep 1
            wait_ms=$((wait_ms - 1000))
        fi
    done
    state=$(cat "$dir/state" 2>/dev/null || echo missing)
    code=$(cat "$dir/exit_code" 2>/dev/null || echo -)
    timed_out=no
    [ -f "$dir/timed_out" ] && timed_out=yes
    notice=no
    [ -f "$dir/notice" ] && notice=yes
    started=$(cat "$dir/started_ms" 2>/dev/null || echo -)
    suite=$(cat "$dir/suite_path" 2>/dev/null || echo "$dir/suite")
    setup=none
    if [ -f "$suite.setup-failed" ]; then
        setup=failed
    elif [ -f "$suite.setup-ok" ]; then
        setup=ok
    elif [ -f "$suite.setup.sh" ]; then
        setup=pending
    fi
    echo "state=$state exit=$code timed_out=$timed_out started=$started setup=$setup notice=$notice"
    if [ -f "$dir/events.jsonl" ]; then
        tail -c "+$((offset + 1))" "$dir/events.jsonl" | head -c 4194304
    fi
}

cmd_stop() {
    dir=$1
    [ -f "$dir/token" ] || exit 0
    rm -f "$dir/secrets.sh"
    # First the mark, then the look: a harness that forks Playwright's (or
    # the setup's) subshell after the look sees the mark and starts nothing;
    # one forked before it is below the harness, and the look finds it.
    : >"$dir/stopping"
    kill_shard "$(cat "$dir/token")" "$$" "$(cat "$dir/pid" 2>/dev/null)"
    [ -f "$dir/exit_code" ] || echo 143 >"$dir/exit_code"
    echo "done" >"$dir/state"
}

cmd_pack() {
    dir=$1
    cd "$dir" || exit 2
    [ -d blob ] && find blob -type f -print0 >>attachments.list
    tar -c --null --ignore-failed-read -T attachments.list 2>/dev/null
    return 0
}

# $1 as a double-quoted value of curl's configuration syntax.
config_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# Post every attachment and the blob report to S3, each as PREFIX<its path>.
# upload.curl (from the control plane) holds the presigned POST: the URL
# and the signed policy's fields, which accept keys under PREFIX only. One
# curl process posts them all (its connections are reused), reading its
# options from a file so that no other user sees the policy in ps.
cmd_upload() {
    dir=$1
    prefix=$2
    cd "$dir" || exit 2
    [ -f upload.curl ] || die "no upload grant in $dir"
    [ -d blob ] && find blob -type f -print0 >>attachments.list
    umask 077
    count=0
    tr '\0' '\n' <attachments.list | sort -u >upload.list
    while IFS= read -r rel; do
        [ -f "$rel" ] || continue
        [ "$count" -gt 0 ] && echo next
        cat upload.curl
        printf 'form-string = %s\n' "$(config_quote "key=$prefix$rel")"
        # The file name is quoted for -F, then the whole for the config.
        file=$(printf '%s' "$rel" | sed 's/[\\"]/\\&/g')
        printf 'form = %s\n' "$(config_quote "file=@\"$file\"")"
        printf '%s\n' 'output = "/dev/null"' 'write-out = "%{response_code}\n"' \
            silent show-error 'retry = 3'
        count=$((count + 1))
    done <upload.list >upload.config
    if [ "$count" -eq 0 ]; then
        echo "uploaded=0 files=0"
        return 0
    fi
    codes=$(curl --config upload.config 2>upload.err)
    ok=$(printf '%s\n' "$codes" | grep -c '^2')
    rm -f upload.curl upload.config
    echo "uploaded=$ok files=$count"
    if [ "$ok" -ne "$count" ]; then
        printf '%s\n' "$codes" | grep -v '^2' | sort | uniq -c | sed 's/^/status /'
        tail -c 1000 upload.err
        return 1
    fi
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
    place_deps "$deps" "$tmp/${package:-.}" || { rm -rf "$tmp"; die "could not place dependencies"; }
    # Two shards of a run on one host may both send it; the first one wins.
    if mv -T "$tmp" "$suite" 2>/dev/null; then
        touch "$suite.complete"
    else
        rm -rf "$tmp"
    fi
    [ -d "$suite" ] || die "suite not in place at $suite"
}

# Copy what the install made (every node_modules folder of a workspace,
# yarn's install state) to its place in this copy of the repository: a copy
# of its own (reflinked where the filesystem can), so that nothing a suite
# writes there reaches the shared folder or another run.
place_deps() {
    deps=$1
    target=$2
    if [ ! -f "$deps/place.list" ]; then
        ln -sfn "$deps/node_modules" "$target/node_modules"
        return 0
    fi
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        mkdir -p "$(dirname "$target/$rel")" &&
            rm -rf "${target:?}/$rel" &&
            cp -a --reflink=auto "$deps/tree/$rel" "$target/$rel" || return 1
    done <"$deps/place.list"
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
upload) cmd_upload "$@" ;;
deps-put) cmd_deps_put "$@" ;;
suite-put) cmd_suite_put "$@" ;;
*) die "unknown command $command" ;;
esac
