// Package version is the version every ciel binary reports with --version and
// the release stamps into images and manifests.
//
// A release build sets it with the linker:
//
//	-ldflags "-X github.com/ciel-ci/ciel/internal/version.version=v0.2.0"
//
// (.ko.yaml does this from $VERSION). Without it, the version comes from the
// module's build information: the module version for `go install
// github.com/ciel-ci/ciel/cmd/ciel@v0.2.0`, or the VCS revision of a build
// from a checkout.
package version

import (
	"runtime/debug"
	"strings"
)

// version is set at release with -X; empty otherwise.
var version string

// String returns the version: the -X value, else the module version from the
// build information, else "(devel)" with the VCS revision when known.
func String() string { return resolve(version, debug.ReadBuildInfo) }

func resolve(stamped string, read func() (*debug.BuildInfo, bool)) string {
	if v := strings.TrimSpace(stamped); v != "" {
		return v
	}
	info, ok := read()
	if !ok {
		return "(unknown)"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "(devel) " + rev
}

// Symbol is the linker symbol a release sets: -ldflags "-X <Symbol>=v0.2.0".
const Symbol = "github.com/ciel-ci/ciel/internal/version.version"
