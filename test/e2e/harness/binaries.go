package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/modfile"
)

// ModulePath is the e2e module's path.
const ModulePath = "github.com/ciel-ci/ciel/test/e2e"

// Binary is a program the harness builds with `go build` inside one of the
// nested build modules (test/e2e/build/...), whose committed go.mod and
// go.sum pin every dependency.
type Binary struct {
	// Name is the program's name, e.g. "kube-apiserver".
	Name string
	// ModuleDir is the build module's directory.
	ModuleDir string
	// Package is the main package's import path.
	Package string
	// Version is the version of the module providing Package, as the build
	// module requires it.
	Version string
	// LDFlags are passed to the linker.
	LDFlags []string
	// GOARCH is the target architecture (default: the host's).
	GOARCH string
}

// Arch returns the architecture the binary is built for.
func (b Binary) Arch() string {
	if b.GOARCH != "" {
		return b.GOARCH
	}
	return runtime.GOARCH
}

// kubeBinary is a command of k8s.io/kubernetes built from build/kube, with
// the version ldflags: without them the apiserver reports v0.0.0-master,
// which Tekton's minimum-version check rejects.
func kubeBinary(e2eRoot, command string) (Binary, error) {
	kubeDir := filepath.Join(e2eRoot, "build", "kube")
	kubeVersion, err := requiredVersion(kubeDir, "k8s.io/kubernetes")
	if err != nil {
		return Binary{}, err
	}
	major, minor, ok := kubeMajorMinor(kubeVersion)
	if !ok {
		return Binary{}, fmt.Errorf("reading %s: unexpected k8s.io/kubernetes version %q", kubeDir, kubeVersion)
	}
	const v = "k8s.io/component-base/version"
	return Binary{Name: command, ModuleDir: kubeDir, Package: "k8s.io/kubernetes/cmd/" + command, Version: kubeVersion,
		LDFlags: []string{"-s", "-w",
			"-X", v + ".gitVersion=" + kubeVersion,
			"-X", v + ".gitMajor=" + major,
			"-X", v + ".gitMinor=" + minor,
			"-X", v + ".gitTreeState=clean",
			"-X", v + ".buildDate=1970-01-01T00:00:00Z",
		}}, nil
}

// kubeMajorMinor splits "v1.35.0" into "1" and "35".
func kubeMajorMinor(v string) (major, minor string, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// requiredVersion returns the version of mod that the go.mod in dir requires.
func requiredVersion(dir, mod string) (string, error) {
	f, err := readModFile(dir)
	if err != nil {
		return "", err
	}
	for _, r := range f.Require {
		if r.Mod.Path == mod {
			return r.Mod.Version, nil
		}
	}
	return "", fmt.Errorf("reading %s/go.mod: %s is not required", dir, mod)
}

func readModFile(dir string) (*modfile.File, error) {
	path := filepath.Join(dir, "go.mod")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	f, err := modfile.ParseLax(path, b, nil)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return f, nil
}

// FindModuleRoot returns the e2e module's directory, searching from dir
// upwards for the go.mod that declares ModulePath.
func FindModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the e2e module: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if f, err := readModFile(d); err == nil && f.Module != nil && f.Module.Mod.Path == ModulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("finding the e2e module: no go.mod declaring %s above %s", ModulePath, dir)
		}
	}
}

// Builder builds Binaries into a cache directory, keyed by everything that
// determines their content, so that a rerun reuses them.
type Builder struct {
	// Dir holds the built binaries, their build logs and timing records.
	Dir string
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
	// GoFlags, when set, replaces GOFLAGS for the builds (default: the
	// environment's GOFLAGS, with -p=2 added when it sets no -p).
	GoFlags string
}

// BuildRecord describes how a cached binary came to be.
type BuildRecord struct {
	Name     string        `json:"name"`
	Version  string        `json:"version"`
	Package  string        `json:"package"`
	Built    time.Time     `json:"built"`
	Duration time.Duration `json:"duration"`
	// Reused is true when this call found the binary in the cache.
	Reused bool `json:"-"`
}

// Path returns where the binary is cached: Dir/NAME-VERSION-KEY, where KEY
// hashes the build module's go.mod and go.sum, the package, the linker flags,
// the Go version and the target platform (GOARCH included).
func (b *Builder) Path(ctx context.Context, bin Binary) (string, error) {
	key, err := cacheKey(ctx, bin)
	if err != nil {
		return "", err
	}
	return filepath.Join(b.Dir, fmt.Sprintf("%s-%s-%s", bin.Name, bin.Version, key)), nil
}

func cacheKey(ctx context.Context, bin Binary) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		c, err := os.ReadFile(filepath.Join(bin.ModuleDir, f))
		if err != nil {
			return "", fmt.Errorf("hashing the build module of %s: %w", bin.Name, err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(c))
		h.Write(c)
	}
	goVersion, err := goEnv(ctx, "GOVERSION")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "pkg %s\nldflags %q\ngo %s\nplatform %s/%s\ncgo 0\n", bin.Package, bin.LDFlags, goVersion, runtime.GOOS, bin.Arch())
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("running go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Ensure returns the path of the cached binary, building it first when it
// is missing. Concurrent callers (other test binaries) serialise on a lock
// file per binary.
func (b *Builder) Ensure(ctx context.Context, bin Binary) (string, BuildRecord, error) {
	rec := BuildRecord{Name: bin.Name, Version: bin.Version, Package: bin.Package}
	logger := b.Logger
	if logger == nil {
		logger = discardLogger()
	}
	path, err := b.Path(ctx, bin)
	if err != nil {
		return "", rec, err
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return "", rec, fmt.Errorf("building %s: %w", bin.Name, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(b.Dir, bin.Name+".lock"))
	if err != nil {
		return "", rec, fmt.Errorf("building %s: %w", bin.Name, err)
	}
	defer unlock()

	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		if prev, err := readBuildRecord(path + ".json"); err == nil {
			rec = prev
		}
		rec.Reused = true
		return path, rec, nil
	}

	logger.Info("building (cold builds take minutes)", "binary", bin.Name, "version", bin.Version, "module", bin.ModuleDir)
	start := time.Now()
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	args := []string{"build", "-trimpath", "-ldflags", strings.Join(bin.LDFlags, " "), "-o", tmp, bin.Package}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = bin.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="+b.goFlags(), "GOWORK=off", "GOARCH="+bin.Arch())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	_ = os.WriteFile(path+".build.log", out.Bytes(), 0o644)
	if err != nil {
		_ = os.Remove(tmp)
		return "", rec, fmt.Errorf("building %s (go %s in %s): %w\n%s", bin.Name, strings.Join(args, " "), bin.ModuleDir, err, out.String())
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", rec, fmt.Errorf("building %s: %w", bin.Name, err)
	}
	rec.Built, rec.Duration = time.Now().UTC(), time.Since(start).Round(time.Second)
	if b, err := json.Marshal(rec); err == nil {
		_ = os.WriteFile(path+".json", b, 0o644)
	}
	logger.Info("built", "binary", bin.Name, "version", bin.Version, "took", rec.Duration)
	return path, rec, nil
}

func (b *Builder) goFlags() string {
	if b.GoFlags != "" {
		return b.GoFlags
	}
	flags := os.Getenv("GOFLAGS")
	for _, f := range strings.Fields(flags) {
		if strings.HasPrefix(f, "-p=") {
			return flags
		}
	}
	return strings.TrimSpace(flags + " -p=2")
}

func readBuildRecord(path string) (BuildRecord, error) {
	var r BuildRecord
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(b, &r)
	return r, err
}

// lockFile takes an exclusive flock on path, waiting for ctx.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// GoBuild builds the main package pkg (a path relative to dir, e.g.
// "./cmd/ciel") of the module in dir into out. It always runs `go build`:
// the Go build cache makes a rebuild of unchanged sources take seconds, and
// these are sources under development.
func GoBuild(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}
