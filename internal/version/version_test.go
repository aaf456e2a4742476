package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	info := func(v string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ciel-ci/ciel", Version: v}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "3169850a1b2c3d4e5f60718293a4b5c6d7e8f901"}
	for _, tc := range []struct {
		name, stamped string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"ldflag wins", "v0.2.0", info("v0.1.0"), "v0.2.0"},
		{"blank ldflag ignored", "  ", info("v0.1.0"), "v0.1.0"},
		{"go install @version", "", info("v0.2.0"), "v0.2.0"},
		{"pseudo-version from VCS", "", info("v0.0.0-20261207141413-3169850a1b2c+dirty"), "v0.0.0-20261207141413-3169850a1b2c+dirty"},
		{"checkout", "", info("(devel)", rev), "(devel) 3169850a1b2c"},
		{"dirty checkout", "", info("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "(devel) 3169850a1b2c-dirty"},
		{"no VCS", "", info("(devel)"), "(devel)"},
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "(unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolve(tc.stamped, tc.read); got != tc.want {
				t.Errorf("resolve(%q) = %q, want %q", tc.stamped, got, tc.want)
			}
		})
	}
}

// TestLinkerFlag builds a real binary with the release's -X flag and runs it:
// the flag's symbol name is the one .ko.yaml and the Makefile use.
func TestLinkerFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ciel")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X "+Symbol+"=v9.8.7-test", "-o", bin, "github.com/ciel-ci/ciel/cmd/ciel")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("ciel --version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "ciel version v9.8.7-test" {
		t.Errorf("ciel --version printed %q", got)
	}
}
