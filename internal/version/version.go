// Package version holds previewd's version, stamped at build time with
// -ldflags "-X github.com/previewd/previewd/internal/version.Version=...".
package version

import "runtime/debug"

// Version is the release or git describe of this build.
var Version = "dev"

// String returns the version and, when known, the VCS revision.
func String() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				v += " (" + s.Value[:7] + ")"
			}
		}
	}
	return v
}
