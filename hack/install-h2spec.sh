#!/usr/bin/env bash
# Builds h2spec (the HTTP/2 conformance tool, github.com/summerwind/h2spec) into ~/.cache/pyambient/, once.
#
#   bin/h2spec-<version>   github.com/summerwind/h2spec/cmd/h2spec (Go module proxy, pinned release)
#
# The binary's name carries the version, so a pin change builds a new one beside the old. It is built from a
# throwaway module whose go.mod pins every dependency (h2spec's release has no go.mod of its own), so the build
# is the same on every machine; the Go checksum database vouches for each module.
set -euo pipefail

# The newest release the module proxy serves (later GitHub tags carry a go.mod without a /v2 module path,
# which the proxy cannot serve).
H2SPEC_VERSION="v2.2.1"

CACHE_DIR="${PYAMBIENT_CACHE:-$HOME/.cache/pyambient}"
BIN_DIR="$CACHE_DIR/bin"
BUILD_DIR="$CACHE_DIR/build/h2spec-$H2SPEC_VERSION"
TARGET="$BIN_DIR/h2spec-$H2SPEC_VERSION"

if [[ -x "$TARGET" ]]; then
    exit 0
fi

command -v go >/dev/null || { echo "install-h2spec: Go is required (go build)" >&2; exit 1; }

# Only one build at a time on a shared machine: a second caller waits for the first one's result.
mkdir -p "$BIN_DIR" "$BUILD_DIR"
exec 9>"$CACHE_DIR/h2spec.lock"
flock 9
if [[ -x "$TARGET" ]]; then
    exit 0
fi

export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

cd "$BUILD_DIR"
cat >go.mod <<EOF
module pyambient.local/h2spec

go 1.24.0

require github.com/summerwind/h2spec $H2SPEC_VERSION+incompatible

require (
	github.com/fatih/color v1.19.0
	github.com/inconshreveable/mousetrap v1.1.0
	github.com/mattn/go-colorable v0.1.14
	github.com/mattn/go-isatty v0.0.20
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
	golang.org/x/net v0.63.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
EOF
rm -f go.sum
go mod download github.com/summerwind/h2spec
go build -ldflags="-s -w -X main.VERSION=${H2SPEC_VERSION#v} -X main.COMMIT=release" \
    -o "$TARGET.new" github.com/summerwind/h2spec/cmd/h2spec
mv -f "$TARGET.new" "$TARGET"
echo "install-h2spec: built h2spec $H2SPEC_VERSION into $TARGET"
