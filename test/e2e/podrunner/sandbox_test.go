package podrunner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/test/e2e/podrunner/sandbox"
)

// sandboxHelper builds cmd/e2e-sandbox, or skips when the sandbox cannot
// run here (it needs root), unless CIEL_REQUIRE_REAL=1.
func sandboxHelper(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "the step sandbox needs root (mount namespaces and chroot)"
		if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
			t.Fatal(msg + ", and CIEL_REQUIRE_REAL=1")
		}
		t.Skip("skipping: " + msg)
	}
	out := filepath.Join(t.TempDir(), "e2e-sandbox")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/e2e-sandbox")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sandbox helper: %v\n%s", err, b)
	}
	return out
}

func TestSandboxRunsWithPodPaths(t *testing.T) {
	helper := sandboxHelper(t)
	dir := t.TempDir()
	results, ws, repo := filepath.Join(dir, "results"), filepath.Join(dir, "ws"), filepath.Join(dir, "ro")
	for _, d := range []string{results, ws, repo} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "input"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `set -e
cat /data/input > /workspace/source/copied
printf '%s' "$GREETING" > /tekton/results/GREETING
pwd > /workspace/source/pwd
ciel-probe
if echo x > /data/forbidden 2>/dev/null; then echo "read-only mount is writable"; exit 9; fi
test ! -e ` + dir + ` || { echo "host run directory visible"; exit 8; }
exit 3`
	var out bytes.Buffer
	s := &Step{
		Command:    []string{"sh", "-c", script},
		Env:        []string{"GREETING=hello", "PATH=/usr/bin:/bin"},
		WorkingDir: "/workspace/source/sub",
		Mounts: Mounts{
			{ContainerPath: "/tekton/results", HostPath: results},
			{ContainerPath: "/workspace/source", HostPath: ws},
		},
		Stdout: &out, Stderr: &out, ScratchDir: t.TempDir(),
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, []byte("#!/bin/sh\necho probe ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{
		Helper:      helper,
		Binds:       []sandbox.Mount{{Source: repo, Target: "/data", ReadOnly: true}},
		Programs:    map[string]string{"/ko-app/ciel-probe": probe},
		PathPrepend: []string{"/ko-app"},
	}
	err := sb.Execute(context.Background(), s)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("err = %v, want exit code 3; output:\n%s", err, out.String())
	}
	for path, want := range map[string]string{
		filepath.Join(results, "GREETING"): "hello",
		filepath.Join(ws, "copied"):        "from the host",
		filepath.Join(ws, "pwd"):           "/workspace/source/sub\n",
	} {
		b, err := os.ReadFile(path)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
	}
	if !strings.Contains(out.String(), "probe ran") {
		t.Errorf("the bound program did not run: %s", out.String())
	}
	// Nothing leaked onto the host: the mount namespace is gone.
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), s.ScratchDir) {
		t.Error("a sandbox mount is visible on the host")
	}
}

func TestSandboxMissingProgramIsAProblem(t *testing.T) {
	helper := sandboxHelper(t)
	var out bytes.Buffer
	s := &Step{Command: []string{"no-such-program-in-this-image"}, Env: []string{"PATH=/usr/bin:/bin"},
		Stdout: &out, Stderr: &out, ScratchDir: t.TempDir()}
	err := (&Sandbox{Helper: helper}).Execute(context.Background(), s)
	var ee *ExitError
	if err == nil || errors.As(err, &ee) {
		t.Fatalf("err = %v, want a setup error (not a step exit code)", err)
	}
	if !strings.Contains(err.Error(), "not found") {
		t.Errorf("error %q does not say the program was not found", err)
	}
}
