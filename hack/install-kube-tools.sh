#!/usr/bin/env bash
# Builds the binaries and CRDs that the `kube` tests need into ~/.cache/pyambient/, once.
#
#   bin/kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver  (Go module proxy, pinned release)
#   bin/kubectl         k8s.io/kubernetes/cmd/kubectl         (same pinned module set)
#   bin/etcd            go.etcd.io/etcd/server/v3             (the etcd release k8s.io/kubernetes pins)
#   crds/gateway-api/   sigs.k8s.io/gateway-api config/crd/standard/*.yaml (pinned module version)
#
# A stamp file records the versions; a re-run with the same versions only compares the stamp.
# Everything is built from one throwaway module under build/ so the three binaries share one
# module graph and one compile cache (the first build is the slow part: see docs/kubernetes.md).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/kube-versions.sh"

CACHE_DIR="${PYAMBIENT_CACHE:-$HOME/.cache/pyambient}"
BIN_DIR="$CACHE_DIR/bin"
BUILD_DIR="$CACHE_DIR/build/kube-tools"
CRD_DIR="$CACHE_DIR/crds/gateway-api"
STAMP="$CACHE_DIR/kube-tools.stamp"
STAMP_CONTENT="kubernetes=$KUBERNETES_VERSION staging=$STAGING_VERSION etcd=$ETCD_VERSION gateway-api=$GATEWAY_API_VERSION"

binaries_present() {
    [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kubectl" && -x "$BIN_DIR/etcd" ]] \
        && compgen -G "$CRD_DIR/*.yaml" >/dev/null
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] && binaries_present; then
    exit 0
fi

command -v go >/dev/null || { echo "install-kube-tools: Go is required (go build)" >&2; exit 1; }

# Only one build at a time on a shared machine: a second caller waits for the first one's result.
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$BUILD_DIR" "$CRD_DIR"
exec 9>"$CACHE_DIR/kube-tools.lock"
flock 9
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] && binaries_present; then
    exit 0
fi

started=$(date +%s)
export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

cd "$BUILD_DIR"
rm -f go.mod go.sum

kubernetes_gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
[[ -f "$kubernetes_gomod" ]] || { echo "install-kube-tools: no go.mod for k8s.io/kubernetes" >&2; exit 1; }

# k8s.io/kubernetes points every staging module at ./staging/src/...; a module outside that tree
# has to replace each of them with its published v0.x release instead.
{
    echo "module pyambient.local/kube-tools"
    echo
    echo "go 1.24.0"
    echo
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/src/.*$#\t\1 => \1 '"$STAGING_VERSION"'#p' "$kubernetes_gomod"
    echo ")"
} >go.mod

go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION" \
    "go.etcd.io/etcd/server/v3@$ETCD_VERSION"

# Without the version stamps both report v0.0.0-master, and kubectl warns about version skew.
minor="${KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    version_ldflags+=" -X $pkg.gitTreeState=clean"
done

go build -ldflags="-s -w $version_ldflags" -o "$BIN_DIR/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver
go build -ldflags="-s -w $version_ldflags" -o "$BIN_DIR/kubectl.new" k8s.io/kubernetes/cmd/kubectl
go build -ldflags="-s -w" -o "$BIN_DIR/etcd.new" go.etcd.io/etcd/server/v3
for name in kube-apiserver kubectl etcd; do
    mv -f "$BIN_DIR/$name.new" "$BIN_DIR/$name"
done

gateway_api_dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
    | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
[[ -d "$gateway_api_dir/config/crd/standard" ]] \
    || { echo "install-kube-tools: no standard CRDs in $gateway_api_dir" >&2; exit 1; }
rm -f "$CRD_DIR"/*.yaml
cp "$gateway_api_dir"/config/crd/standard/*.yaml "$CRD_DIR/"
chmod u+w "$CRD_DIR"/*.yaml

echo "$STAMP_CONTENT" >"$STAMP"
echo "install-kube-tools: built $STAMP_CONTENT in $(( $(date +%s) - started ))s into $BIN_DIR"
