#!/usr/bin/env bash
# Builds promtool from the Go module proxy, pinned by deploy/tools/go.mod, into
# a cache directory outside the repository keyed by version. A second run
# finds the binary and only prints its path.
#
#   deploy/tools/build-promtool.sh          # prints the path of promtool
#   PREVIEWD_PROMTOOL=/path/to/promtool     # use this binary instead
#   PROMTOOL_TAGS=""                        # build with every service-discovery
#                                           # plugin (default drops them)
#
# Diagnostics go to stderr; stdout is only the path, so callers can do
#   promtool="$(deploy/tools/build-promtool.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -n "${PREVIEWD_PROMTOOL:-}" ]]; then
  [[ -x "$PREVIEWD_PROMTOOL" ]] || { echo "PREVIEWD_PROMTOOL=$PREVIEWD_PROMTOOL is not executable" >&2; exit 1; }
  echo "$PREVIEWD_PROMTOOL"
  exit 0
fi

# The version is whatever deploy/tools/go.mod requires; keep one source of truth.
version="$(awk '$1 == "github.com/prometheus/prometheus" { print $2; exit } $1 == "require" && $2 == "github.com/prometheus/prometheus" { print $3; exit }' "$here/go.mod")"
[[ -n "$version" ]] || { echo "github.com/prometheus/prometheus not required in $here/go.mod" >&2; exit 1; }

bindir="${XDG_CACHE_HOME:-$HOME/.cache}/previewd/tools"
bin="$bindir/promtool-$version"
# previewd only uses promtool for rules, rule unit tests and metrics lint, none
# of which need service discovery. remove_all_sd drops the AWS, Azure, GCE,
# Kubernetes, ... SD plugins and with them most of the compile time; set
# PROMTOOL_TAGS="" for a promtool that can also `check config` SD sections.
tags="${PROMTOOL_TAGS-remove_all_sd}"
stamp="$( (cat "$here/go.sum"; echo "tags=$tags") | sha256sum | cut -c1-64)"

if [[ -x "$bin" && -f "$bin.stamp" && "$(cat "$bin.stamp")" == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bindir"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
# The Prometheus build embeds its version through common/version; set it so
# `promtool --version` tells which pin this is.
ld="-s -w -X github.com/prometheus/common/version.Version=${version#v} -X github.com/prometheus/common/version.Branch=previewd-tools"
start=$(date +%s)
echo "building github.com/prometheus/prometheus/cmd/promtool@$version (tags: ${tags:-none}) -> $bin" >&2
# Build into a temp name and rename, so an interrupted build never leaves a
# half-written binary that a later run would trust.
go build -trimpath -tags "$tags" -ldflags "$ld" -o "$bin.tmp.$$" github.com/prometheus/prometheus/cmd/promtool
mv "$bin.tmp.$$" "$bin"
echo "$stamp" > "$bin.stamp"
echo "built promtool in $(( $(date +%s) - start ))s" >&2
echo "$bin"
