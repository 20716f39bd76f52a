#!/usr/bin/env bash
# Install the Debian packages the tests need, where missing:
#   busybox-static   the test images' userland (scripts/build-test-images.sh)
#   docker-registry  a real OCI registry the registry tests start on loopback
#   apache2-utils    htpasswd, for the registry that requires a login
#   chromium, chromium-driver   the web UI's browser tests
#   git              the tests' local repositories
#   nodejs           the web UI's pure modules' tests (node --test)
# Installing needs root; without it, say what is missing and fail.
#
# Usage: scripts/ensure-test-packages.sh [--quiet]
set -euo pipefail
# errtrace: functions inherit the trap, so a failure anywhere says what failed.
set -o errtrace
trap 'echo "ensure-test-packages: ERROR: \`$BASH_COMMAND\` failed (exit $?) at line $LINENO" >&2' ERR

QUIET=0
case "${1:-}" in
    -q | --quiet) QUIET=1 ;;
    "") ;;
    *)
        echo "ensure-test-packages: unknown argument: $1" >&2
        exit 2
        ;;
esac
say() { [ "$QUIET" = 1 ] || echo "ensure-test-packages: $*"; }

PACKAGES=(busybox-static docker-registry apache2-utils chromium chromium-driver git nodejs)
missing=()
for pkg in "${PACKAGES[@]}"; do
    # Compared whole, not piped into `grep -q`: an early-exiting reader
    # can SIGPIPE the writer and fail the pipeline under pipefail.
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" = 0 ]; then
    say "all present: ${PACKAGES[*]}"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-test-packages: ERROR: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
fi
say "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
