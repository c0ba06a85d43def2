#!/usr/bin/env bash
# Builds what a real test node runs besides the API server into ~/.cache/pyambient/, once:
#
#   bin/kubelet, bin/kube-proxy, bin/kube-controller-manager, bin/kube-scheduler
#       k8s.io/kubernetes/cmd/...  from the same throwaway module as hack/install-kube-tools.sh
#       (same version, same module graph, same Go build cache: most packages are compiled already)
#   bin/coredns
#       github.com/coredns/coredns (pinned), a main of ours with only the plugins the node's Corefile
#       uses (the upstream main links ~50 cloud plugins the node never needs)
#
# One lock for both scripts (a shared machine builds once); a stamp records the versions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/kube-versions.sh"

CACHE_DIR="${PYAMBIENT_CACHE:-$HOME/.cache/pyambient}"
BIN_DIR="$CACHE_DIR/bin"
KUBE_BUILD_DIR="$CACHE_DIR/build/kube-tools"
COREDNS_BUILD_DIR="$CACHE_DIR/build/coredns"
STAMP="$CACHE_DIR/node-tools.stamp"
STAMP_CONTENT="kubernetes=$KUBERNETES_VERSION staging=$STAGING_VERSION coredns=$COREDNS_VERSION"
NODE_BINARIES=(kubelet kube-proxy kube-controller-manager kube-scheduler)

binaries_present() {
    local name
    for name in "${NODE_BINARIES[@]}" coredns; do
        [[ -x "$BIN_DIR/$name" ]] || return 1
    done
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] && binaries_present; then
    exit 0
fi

# The node binaries are built inside install-kube-tools.sh's module: it must exist first.
bash "$here/install-kube-tools.sh"

mkdir -p "$CACHE_DIR" "$BIN_DIR" "$COREDNS_BUILD_DIR"
exec 9>"$CACHE_DIR/kube-tools.lock"
flock 9
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] && binaries_present; then
    exit 0
fi

export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

minor="${KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    version_ldflags+=" -X $pkg.gitTreeState=clean"
done

cd "$KUBE_BUILD_DIR"
for name in "${NODE_BINARIES[@]}"; do
    started=$(date +%s)
    go build -ldflags="-s -w $version_ldflags" -o "$BIN_DIR/$name.new" "k8s.io/kubernetes/cmd/$name"
    echo "install-node-tools: $name built in $(( $(date +%s) - started ))s"
done

started=$(date +%s)
cd "$COREDNS_BUILD_DIR"
rm -f go.mod go.sum
cat >main.go <<'GO'
// The test node's cluster DNS: CoreDNS with only the plugins its Corefile names.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Same relative order as upstream plugin.cfg (the order a query passes through them).
var directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
GO
{
    echo "module pyambient.local/coredns"
    echo
    echo "go 1.25.0"
    echo
    echo "require github.com/coredns/coredns $COREDNS_VERSION"
} >go.mod
go get "github.com/coredns/coredns@$COREDNS_VERSION"
go mod tidy
go build -ldflags="-s -w" -o "$BIN_DIR/coredns.new" .
echo "install-node-tools: coredns built in $(( $(date +%s) - started ))s"

for name in "${NODE_BINARIES[@]}" coredns; do
    mv -f "$BIN_DIR/$name.new" "$BIN_DIR/$name"
done
echo "$STAMP_CONTENT" >"$STAMP"
