//go:build tools

// Package tools pins the versions of command-line tools that previewd's
// operational checks use. It is a separate module so the daemon's own go.mod
// never picks up Prometheus server dependencies.
//
// Build with deploy/tools/build-promtool.sh.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
