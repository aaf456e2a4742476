package baseimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type entry struct {
	typ        byte
	mode       int64
	body, link string
	uid, gid   int
	mtime      time.Time
}

func readLayer(t *testing.T, l v1.Layer) (names []string, entries map[string]entry) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries = map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, entries
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		entries[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, body: string(b), link: h.Linkname, uid: h.Uid, gid: h.Gid, mtime: h.ModTime}
	}
}

func TestLayer(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: "usr/bin/prog", Mode: 0o755, Source: src},
		{Path: "usr", Mode: fs.ModeDir | 0o755},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "usr/bin/sh", Mode: fs.ModeSymlink, Link: "/usr/bin/prog"},
		{Path: "/etc/motd", Mode: 0o644, Body: []byte("hi\n")},
	}
	l, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	names, got := readLayer(t, l)
	if want := "etc/motd tmp/ usr/ usr/bin/ usr/bin/prog usr/bin/sh"; strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
	want := map[string]entry{
		"etc/motd":     {typ: tar.TypeReg, mode: 0o644, body: "hi\n"},
		"tmp/":         {typ: tar.TypeDir, mode: 0o1777},
		"usr/":         {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/":     {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/prog": {typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\n"},
		"usr/bin/sh":   {typ: tar.TypeSymlink, mode: 0o777, link: "/usr/bin/prog"},
	}
	for n, w := range want {
		g := got[n]
		if !g.mtime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", n, g.mtime)
		}
		g.mtime = time.Time{}
		if g != w {
			t.Errorf("%s: %+v, want %+v", n, g, w)
		}
	}
	mt, err := l.MediaType()
	if err != nil || mt != types.OCILayer {
		t.Errorf("media type %s (%v), want %s", mt, err, types.OCILayer)
	}

	// Deterministic: the same files in another order make the same layer.
	reversed := make([]File, len(files))
	for i, f := range files {
		reversed[len(files)-1-i] = f
	}
	l2, err := Layer(reversed)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("same files, digests %s and %s", d1, d2)
	}
}

func TestLayerRejects(t *testing.T) {
	for name, files := range map[string][]File{
		"duplicate":      {{Path: "a", Body: []byte("1")}, {Path: "/a", Body: []byte("2")}},
		"empty path":     {{Path: "/"}},
		"missing source": {{Path: "a", Source: "/nonexistent/file"}},
	} {
		if _, err := Layer(files); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestImage(t *testing.T) {
	l, err := Layer([]File{{Path: "a", Body: []byte("a")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, v1.Config{Cmd: []string{"sh"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm" || cf.Variant != "v7" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config %s/%s/%s created %v", cf.OS, cf.Architecture, cf.Variant, cf.Created)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v, rootfs %+v", cf.Config, cf.RootFS)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, err := img.Manifest()
	if err != nil || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %v (%v)", m.Config.MediaType, err)
	}
}

func TestBusyboxFiles(t *testing.T) {
	bb := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bb, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := BusyboxFiles(bb, []string{"bin/busybox", "bin/sh", "usr/bin/env", "/bin/sh", "opt/odd/applet", "sbin/init"})
	byPath := map[string]File{}
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
	if _, err := Layer(files); err != nil {
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
