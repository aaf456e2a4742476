// Package baseimage makes the base images the end-to-end test project
// builds FROM, without any outside registry: busybox for linux/amd64 and
// linux/arm64 from Debian's busybox-static package, and a Go toolchain
// image holding the host's Go, trimmed to what building the test project
// needs. Every image is deterministic: the same inputs give the same digest.
package baseimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

// DefaultPath is the PATH of the busybox images.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxFiles is the root filesystem of a busybox image: the binary at
// /bin/busybox, a symlink per applet at its usual place (applets as
// "busybox --list-full" prints them: "bin/sh", "usr/bin/env"), root's
// passwd and group entries and nobody's, and /tmp, /root, /var/tmp.
func BusyboxFiles(busybox string, applets []string) []imagefs.File {
	files := []imagefs.File{
		{Path: "bin", Mode: fs.ModeDir | 0o755},
		{Path: "bin/busybox", Mode: 0o755, Source: busybox},
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "root", Mode: fs.ModeDir | 0o700},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "usr", Mode: fs.ModeDir | 0o755},
		{Path: "usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "usr/local", Mode: fs.ModeDir | 0o755},
		{Path: "usr/local/bin", Mode: fs.ModeDir | 0o755},
		{Path: "usr/sbin", Mode: fs.ModeDir | 0o755},
		{Path: "sbin", Mode: fs.ModeDir | 0o755},
		{Path: "var", Mode: fs.ModeDir | 0o755},
		{Path: "var/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, a := range applets {
		a = strings.Trim(path.Clean("/"+a), "/")
		dir := path.Dir(a)
		if a == "" || have[a] || !have[dir] {
			continue // busybox itself, duplicates, unusual directories
		}
		have[a] = true
		files = append(files, imagefs.File{Path: a, Mode: fs.ModeSymlink, Link: "/bin/busybox"})
	}
	return files
}

// Applets lists the applets of a busybox binary the host can run, as
// "bin/sh", "usr/bin/env", ...
func Applets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the applets of %s: %w", busybox, err)
	}
	return strings.Fields(string(out)), nil
}

// Busybox makes the busybox image of one platform from its busybox binary.
func Busybox(busybox string, applets []string, plat v1.Platform) (v1.Image, error) {
	l, err := imagefs.Layer(BusyboxFiles(busybox, applets))
	if err != nil {
		return nil, err
	}
	return imagefs.Image(plat, v1.Config{Env: []string{"PATH=" + DefaultPath}, Cmd: []string{"sh"}}, l)
}

var aptMu sync.Mutex

// DebianBusybox returns the busybox binary of Debian's busybox-static for a
// Debian architecture (amd64, arm64), downloaded with apt-get into
// cacheDir once (with its own package lists, leaving the host's apt state
// and installed packages alone) and unpacked with dpkg-deb.
func DebianBusybox(ctx context.Context, cacheDir, arch string) (string, error) {
	aptMu.Lock()
	defer aptMu.Unlock()
	dir := filepath.Join(cacheDir, "debian", arch)
	bin := filepath.Join(dir, "root", "bin", "busybox")
	if st, err := os.Stat(bin); err == nil && st.Mode().IsRegular() {
		return bin, nil
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", fmt.Errorf("busybox-static for %s: %w", arch, err)
		}
	}
	apt := func(args ...string) error {
		full := append([]string{
			"-q", "-o", "APT::Architecture=" + arch, "-o", "APT::Architectures::=" + arch,
			"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
			"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
			"-o", "Dir::State::status=/dev/null",
			"-o", "APT::Sandbox::User=root",
		}, args...)
		cmd := exec.CommandContext(ctx, "apt-get", full...)
		cmd.Dir = filepath.Join(dir, "debs")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := apt("update"); err != nil {
		return "", fmt.Errorf("busybox-static for %s: %w", arch, err)
	}
	if err := apt("download", "busybox-static:"+arch); err != nil {
		return "", fmt.Errorf("busybox-static for %s: %w", arch, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "debs", "busybox-static_*_"+arch+".deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("busybox-static for %s: apt-get download left %d packages", arch, len(debs))
	}
	tmp := filepath.Join(dir, fmt.Sprintf("root.tmp-%d", os.Getpid()))
	_ = os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("busybox-static for %s: dpkg-deb -x: %w\n%s", arch, err, out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "bin", "busybox")); err != nil {
		return "", fmt.Errorf("busybox-static for %s: the package has no bin/busybox: %w", arch, err)
	}
	_ = os.RemoveAll(filepath.Join(dir, "root"))
	if err := os.Rename(tmp, filepath.Join(dir, "root")); err != nil {
		return "", fmt.Errorf("busybox-static for %s: %w", arch, err)
	}
	return bin, nil
}

// GoToolchainFiles returns the parts of the Go installation at goroot that
// building pkgs (CGO_ENABLED=0) for each of platforms needs, under
// usr/local/go: the go command, the compiler, assembler and linker, the
// assembler headers, and the sources (no tests, no testdata) of the
// standard packages pkgs depend on. The go command runs on the host's
// platform, so the image it goes in must be of that platform.
func GoToolchainFiles(ctx context.Context, goroot, moduleDir string, platforms []v1.Platform, pkgs ...string) ([]imagefs.File, error) {
	hostTools := filepath.Join(goroot, "pkg", "tool")
	entries, err := os.ReadDir(hostTools)
	if err != nil || len(entries) != 1 {
		return nil, fmt.Errorf("go toolchain: expected one tool directory in %s (%v)", hostTools, err)
	}
	toolDir := entries[0].Name()
	dirs := map[string]bool{}
	for _, p := range platforms {
		args := append([]string{"list", "-deps", "-f", "{{if .Standard}}{{.Dir}}{{end}}"}, pkgs...)
		cmd := exec.CommandContext(ctx, filepath.Join(goroot, "bin", "go"), args...)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Architecture, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			return nil, fmt.Errorf("go toolchain: listing the dependencies for %s: %w", p, err)
		}
		for _, d := range strings.Fields(string(out)) {
			dirs[d] = true
		}
	}
	const prefix = "usr/local/go"
	var files []imagefs.File
	addDir := func(rel string) {
		files = append(files, imagefs.File{Path: path.Join(prefix, rel), Mode: fs.ModeDir | 0o755})
	}
	added := map[string]bool{}
	addFile := func(rel string, mode fs.FileMode) {
		if added[rel] {
			return
		}
		added[rel] = true
		files = append(files, imagefs.File{Path: path.Join(prefix, rel), Mode: mode, Source: filepath.Join(goroot, filepath.FromSlash(rel))})
	}
	madeDirs := map[string]bool{}
	var mkdirs func(rel string)
	mkdirs = func(rel string) {
		if rel == "." || madeDirs[rel] {
			return
		}
		mkdirs(path.Dir(rel))
		madeDirs[rel] = true
		addDir(rel)
	}
	for _, d := range []string{"usr", "usr/local"} {
		files = append(files, imagefs.File{Path: d, Mode: fs.ModeDir | 0o755})
	}
	files = append(files, imagefs.File{Path: prefix, Mode: fs.ModeDir | 0o755})
	for _, f := range []string{"VERSION", "go.env", "bin/go", "src/go.mod", "src/go.sum", "src/vendor/modules.txt",
		"pkg/tool/" + toolDir + "/compile", "pkg/tool/" + toolDir + "/asm", "pkg/tool/" + toolDir + "/link"} {
		st, err := os.Stat(filepath.Join(goroot, filepath.FromSlash(f)))
		if errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(f, "pkg/") && f != "bin/go" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("go toolchain: %w", err)
		}
		mkdirs(path.Dir(f))
		addFile(f, st.Mode().Perm())
	}
	include, err := os.ReadDir(filepath.Join(goroot, "pkg", "include"))
	if err != nil {
		return nil, fmt.Errorf("go toolchain: %w", err)
	}
	mkdirs("pkg/include")
	for _, e := range include {
		addFile("pkg/include/"+e.Name(), 0o644)
	}
	srcRoot := filepath.Join(goroot, "src")
	var sorted []string
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		rel, err := filepath.Rel(goroot, d)
		if err != nil || !strings.HasPrefix(d, srcRoot+string(filepath.Separator)) {
			return nil, fmt.Errorf("go toolchain: standard package directory %s is outside %s", d, srcRoot)
		}
		rel = filepath.ToSlash(rel)
		mkdirs(rel)
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("go toolchain: %w", err)
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() && n != "testdata" {
				// Assembly includes headers of subdirectories, e.g. the
				// runtime's "cgo/abi_amd64.h" even without cgo.
				headers, err := filepath.Glob(filepath.Join(d, n, "*.h"))
				if err != nil {
					return nil, fmt.Errorf("go toolchain: %w", err)
				}
				if len(headers) > 0 {
					mkdirs(rel + "/" + n)
				}
				for _, h := range headers {
					addFile(rel+"/"+n+"/"+filepath.Base(h), 0o644)
				}
				continue
			}
			if !e.Type().IsRegular() || strings.HasSuffix(n, "_test.go") {
				continue
			}
			addFile(rel+"/"+n, 0o644)
		}
	}
	return files, nil
}

// GoToolchainEnv is the environment of the Go toolchain image: the go
// command on PATH, no toolchain switching or module downloads, the build
// cache in /tmp.
var GoToolchainEnv = []string{
	"PATH=/usr/local/go/bin:" + DefaultPath,
	"GOTOOLCHAIN=local",
	"GOPROXY=off",
	"GOCACHE=/tmp/go-build",
	"CGO_ENABLED=0",
}

// GoToolchain makes the Go toolchain image for the host's platform: the
// busybox root filesystem under the Go layer (GoToolchainFiles).
func GoToolchain(busybox string, applets []string, goFiles []imagefs.File, plat v1.Platform) (v1.Image, error) {
	bl, err := imagefs.Layer(BusyboxFiles(busybox, applets))
	if err != nil {
		return nil, err
	}
	gl, err := imagefs.Layer(goFiles)
	if err != nil {
		return nil, err
	}
	return imagefs.Image(plat, v1.Config{Env: GoToolchainEnv, Cmd: []string{"sh"}, WorkingDir: "/"}, bl, gl)
}
