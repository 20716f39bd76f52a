#!/usr/bin/env bash
# Build the local container images that Slipway's tests and examples use.
#
# No image can be pulled from a registry on this machine, so every image is
# built here from scratch. Idempotent: an image that already exists with the
# current recipe is skipped unless --force is given.
#
# Images:
#   slipway.test/busybox:1   FROM scratch + Debian's static busybox, with every
#                            applet on PATH (sh, sleep, grep, nc, httpd, wget...)
#
# Usage: scripts/build-test-images.sh [--force] [--quiet]
set -euo pipefail

FORCE=0
QUIET=0
for arg in "$@"; do
    case "$arg" in
        -f | --force) FORCE=1 ;;
        -q | --quiet) QUIET=1 ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-test-images: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

# Bump when the way an image is built changes, so existing images get rebuilt.
RECIPE=1
SOURCE_LABEL="org.opencontainers.image.source=slipway-test-images"
BUSYBOX_IMAGE="slipway.test/busybox:1"

CLEANUP=()
cleanup() { [ "${#CLEANUP[@]}" = 0 ] || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT
# errtrace: functions inherit the trap, so a failure anywhere says what failed.
set -o errtrace
trap 'echo "build-test-images: ERROR: \`$BASH_COMMAND\` failed (exit $?) at line $LINENO" >&2' ERR

say() { [ "$QUIET" = 1 ] || echo "build-test-images: $*"; }
die() {
    echo "build-test-images: ERROR: $*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/ensure-docker.sh)"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/ensure-docker.sh)"

# True if the image exists and was built by the current recipe.
image_current() {
    local recipe
    recipe=$(docker image inspect --format '{{ index .Config.Labels "slipway.test.recipe" }}' "$1" 2>/dev/null) || return 1
    [ "$recipe" = "$RECIPE" ]
}

ensure_busybox_static() {
    # Debian's busybox-static ships a statically linked /bin/busybox; the
    # dynamic "busybox" package ships the same path, so check the package.
    if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)" = "install ok installed" ] &&
        [ -x /bin/busybox ]; then
        return 0
    fi
    say "installing busybox-static with apt"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq busybox-static >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq busybox-static >/dev/null
    fi
    [ -x /bin/busybox ] || die "/bin/busybox missing after installing busybox-static"
}

build_busybox() {
    ensure_busybox_static

    local ctx
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/slipway-busybox.XXXXXX")
    CLEANUP+=("$ctx")

    local root="$ctx/rootfs"
    mkdir -p "$root/bin"
    cp /bin/busybox "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"

    # One symlink per applet, at the path busybox itself reports.
    local applet n=0
    while IFS= read -r applet; do
        [ -n "$applet" ] || continue
        [ "$applet" = "bin/busybox" ] && continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -sf /bin/busybox "$root/$applet"
        n=$((n + 1))
    done < <(/bin/busybox --list-full)
    [ -e "$root/bin/sh" ] || die "busybox has no sh applet"

    mkdir -p "$root/etc" "$root/root" "$root/workspace" "$root/var/www" \
        "$root/usr/local/bin" "$root/usr/local/sbin" "$root/home"
    mkdir -p "$root/tmp" "$root/var/tmp"
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    cat >"$root/etc/nsswitch.conf" <<'EOF'
hosts: files dns
EOF

    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL $SOURCE_LABEL slipway.test.recipe=$RECIPE
WORKDIR /
CMD ["/bin/sh"]
EOF

    local old_id new_id bbver
    old_id=$(docker image inspect --format '{{.Id}}' "$BUSYBOX_IMAGE" 2>/dev/null || true)
    # No pipe into a reader that stops early (`head`): under pipefail the
    # writer's SIGPIPE would fail the script at random.
    local banner
    banner=$(/bin/busybox 2>&1 || true)
    banner=${banner%%$'\n'*}
    bbver=$(awk '{print $2}' <<<"$banner")
    say "building $BUSYBOX_IMAGE (busybox $bbver, $n applets)"
    # Without the buildx plugin, ask for the legacy builder outright (it needs
    # no registry either); with it, let Docker use BuildKit.
    local buildkit=1
    docker buildx version >/dev/null 2>&1 || buildkit=0
    if ! DOCKER_BUILDKIT=$buildkit docker build -q -t "$BUSYBOX_IMAGE" "$ctx" >"$ctx/build.log" 2>&1; then
        cat "$ctx/build.log" >&2
        die "docker build of $BUSYBOX_IMAGE failed"
    fi

    # Smoke test: shell, and the applets the tests and examples rely on.
    local out
    out=$(docker run --rm --network none "$BUSYBOX_IMAGE" sh -ec '
        echo ok
        for a in sleep grep nc httpd wget sed find tee test mkdir cp timeout; do
            command -v "$a" >/dev/null || { echo "missing applet: $a" >&2; exit 1; }
        done
        test -d /workspace -a -d /var/www
        test -k /tmp
        grep -q "^nobody:" /etc/passwd
    ' 2>&1) || die "smoke test of $BUSYBOX_IMAGE failed: $out"
    [ "$out" = ok ] || die "smoke test of $BUSYBOX_IMAGE printed unexpected output: $out"
    # A rebuild leaves the previous image untagged: drop it unless in use.
    new_id=$(docker image inspect --format '{{.Id}}' "$BUSYBOX_IMAGE")
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    say "built $BUSYBOX_IMAGE"
}

if [ "$FORCE" = 0 ] && image_current "$BUSYBOX_IMAGE"; then
    say "skipped $BUSYBOX_IMAGE (exists; use --force to rebuild)"
else
    build_busybox
fi
