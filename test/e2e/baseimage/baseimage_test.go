package baseimage

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

func TestBusyboxFiles(t *testing.T) {
	bb := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bb, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := BusyboxFiles(bb, []string{"bin/busybox", "bin/sh", "usr/bin/env", "/bin/sh", "opt/odd/applet", "sbin/init"})
	byPath := map[string]imagefs.File{}
	for _, f := range files {
		if _, dup := byPath[f.Path]; dup {
			t.Errorf("%s listed twice", f.Path)
		}
		byPath[f.Path] = f
	}
	if f := byPath["bin/busybox"]; f.Source != bb || f.Mode != 0o755 {
		t.Errorf("bin/busybox: %+v", f)
	}
	for _, a := range []string{"bin/sh", "usr/bin/env", "sbin/init"} {
		if f := byPath[a]; f.Mode != fs.ModeSymlink || f.Link != "/bin/busybox" {
			t.Errorf("%s: %+v, want a symlink to /bin/busybox", a, f)
		}
	}
	if _, ok := byPath["opt/odd/applet"]; ok {
		t.Error("an applet in a directory the image lacks was linked")
	}
	if f := byPath["tmp"]; f.Mode&fs.ModeSticky == 0 {
		t.Errorf("tmp is not sticky: %v", f.Mode)
	}
	if !strings.Contains(string(byPath["etc/passwd"].Body), "root:x:0:0:") {
		t.Error("no root in /etc/passwd")
	}
	if _, err := imagefs.Layer(files); err != nil {
		t.Errorf("the busybox files do not make a layer: %v", err)
	}
}

// TestGoToolchainFiles lists the host's Go for a small program and checks
// that it carries the tools and the sources cross-compiling needs, and no
// tests.
func TestGoToolchainFiles(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	goroot := strings.TrimSpace(string(out))
	mod := t.TempDir()
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/m\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plats := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	files, err := GoToolchainFiles(context.Background(), goroot, mod, plats, ".")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		if have[f.Path] {
			t.Errorf("%s listed twice", f.Path)
		}
		have[f.Path] = true
		if strings.HasSuffix(f.Path, "_test.go") {
			t.Errorf("test file %s", f.Path)
		}
	}
	tools := "usr/local/go/pkg/tool/" + runtime.GOOS + "_" + runtime.GOARCH
	for _, p := range []string{"usr/local/go/bin/go", tools + "/compile", tools + "/asm", tools + "/link",
		"usr/local/go/src/fmt/print.go", "usr/local/go/src/runtime/asm_arm64.s", "usr/local/go/src/runtime/asm_amd64.s",
		"usr/local/go/src/runtime/cgo/abi_amd64.h", "usr/local/go/pkg/include/textflag.h"} {
		if !have[p] {
			t.Errorf("missing %s", p)
		}
	}
	if have["usr/local/go/src/net/http/server.go"] {
		t.Error("carries packages the program does not use")
	}
	if _, err := GoToolchainFiles(context.Background(), t.TempDir(), mod, plats, "."); err == nil {
		t.Error("a directory without a Go installation gave no error")
	}
}
