#!/usr/bin/env bash
# Make sure a Docker daemon is reachable, starting one if needed.
#
# If `docker info` fails: install Debian's docker.io when dockerd is absent,
# start dockerd in the background (log: /tmp/dockerd.log), and wait up to
# 60 s for it. Exits 1 with a message if Docker never comes up; never skips.
#
# Usage: scripts/ensure-docker.sh [--quiet]
set -euo pipefail
# errtrace: functions inherit the trap, so a failure anywhere says what failed.
set -o errtrace
trap 'echo "ensure-docker: ERROR: \`$BASH_COMMAND\` failed (exit $?) at line $LINENO" >&2' ERR

QUIET=0
case "${1:-}" in
    -q | --quiet) QUIET=1 ;;
    "") ;;
    *)
        echo "ensure-docker: unknown argument: $1" >&2
        exit 2
        ;;
esac

LOG=/tmp/dockerd.log
WAIT_SECS=60

say() { [ "$QUIET" = 1 ] || echo "ensure-docker: $*"; }
die() {
    echo "ensure-docker: ERROR: $*" >&2
    exit 1
}

dockerd_running() {
    if command -v pgrep >/dev/null 2>&1; then
        pgrep -x dockerd >/dev/null 2>&1
    else
        [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null
    fi
}

docker_up() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

if docker_up; then
    say "docker is up (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "installing docker.io with apt"
    [ "$(id -u)" = 0 ] || die "dockerd is not installed and we are not root to install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq docker.io >/dev/null 2>&1; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt-get install -y -qq docker.io >/dev/null || die "apt-get install docker.io failed"
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
fi

STARTED_PID=""
# A daemon may be running yet not answering (still starting); only start one
# when none is running, so that we never race two daemons on one data root.
if dockerd_running; then
    say "dockerd is running but not answering yet; waiting"
else
    [ "$(id -u)" = 0 ] || die "docker is not reachable and we are not root to start dockerd"
    say "starting dockerd (log: $LOG)"
    nohup dockerd >>"$LOG" 2>&1 </dev/null &
    STARTED_PID=$!
    disown || true
fi

for _ in $(seq "$WAIT_SECS"); do
    if docker_up; then
        say "docker is up (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    if [ -n "$STARTED_PID" ] && ! kill -0 "$STARTED_PID" 2>/dev/null; then
        echo "ensure-docker: ERROR: dockerd (pid $STARTED_PID) exited during start-up" >&2
        echo "ensure-docker: last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 1
done

echo "ensure-docker: ERROR: docker did not come up within ${WAIT_SECS}s" >&2
if [ -f "$LOG" ]; then
    echo "ensure-docker: last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
fi
exit 1
