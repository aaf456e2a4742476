package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// PrepareConfig says what Prepare builds and where it caches it.
type PrepareConfig struct {
	// E2ERoot is the e2e module's directory (test/e2e).
	E2ERoot string
	// CacheDir persists across runs (default: $CIEL_E2E_CACHE, else
	// ~/.cache/ciel-e2e).
	CacheDir string
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
}

// NodeBinaries returns what the sealed cluster runs, built from the nested
// modules under e2eRoot/build: the five Kubernetes commands (build/kube) for
// the host's architecture plus an arm64 kubelet (run under qemu-user for the
// arm64 node), CoreDNS (build/coredns), the Kaniko executor (build/kaniko)
// and the pod sandbox (build/pause) for amd64 and arm64. Map keys are the
// names Prepared.Binaries uses.
func NodeBinaries(e2eRoot string) (map[string]Binary, error) {
	kube, err := kubeBinary(e2eRoot, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	kanikoDir := filepath.Join(e2eRoot, "build", "kaniko")
	kanikoVersion, err := requiredVersion(kanikoDir, "github.com/GoogleContainerTools/kaniko")
	if err != nil {
		return nil, err
	}
	kaniko := Binary{Name: "kaniko-executor", ModuleDir: kanikoDir, Package: "github.com/GoogleContainerTools/kaniko/cmd/executor", Version: kanikoVersion,
		LDFlags: []string{"-s", "-w", "-X", "github.com/GoogleContainerTools/kaniko/pkg/version.version=" + kanikoVersion}}
	corednsDir := filepath.Join(e2eRoot, "build", "coredns")
	corednsVersion, err := requiredVersion(corednsDir, "github.com/coredns/coredns")
	if err != nil {
		return nil, err
	}
	pauseDir := filepath.Join(e2eRoot, "build", "pause")
	out := map[string]Binary{
		"kube-apiserver": kube,
		"coredns": {Name: "coredns", ModuleDir: corednsDir, Package: "github.com/ciel-ci/ciel/test/e2e/build/coredns",
			Version: corednsVersion, LDFlags: []string{"-s", "-w"}},
	}
	for _, c := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		out[c] = Binary{Name: c, ModuleDir: kube.ModuleDir, Package: "k8s.io/kubernetes/cmd/" + c, Version: kube.Version, LDFlags: kube.LDFlags}
	}
	out["kubelet-arm64"] = Binary{Name: "kubelet-arm64", ModuleDir: kube.ModuleDir, Package: "k8s.io/kubernetes/cmd/kubelet",
		Version: kube.Version, LDFlags: kube.LDFlags, GOARCH: "arm64"}
	for _, arch := range []string{"amd64", "arm64"} {
		k := kaniko
		k.Name, k.GOARCH = "kaniko-executor-"+arch, arch
		out[k.Name] = k
		out["pause-"+arch] = Binary{Name: "pause-" + arch, ModuleDir: pauseDir, Package: "github.com/ciel-ci/ciel/test/e2e/build/pause",
			Version: "v1", LDFlags: []string{"-s", "-w"}, GOARCH: arch}
	}
	return out, nil
}

// Prepare is the host phase: everything that needs the Go module proxy,
// which the sealed network namespace cannot reach. It builds (or reuses)
// NodeBinaries, copies the Tekton Pipelines and Triggers modules into the
// cache (writable, dependencies downloaded, for `ko resolve` with
// GOPROXY=off), downloads ciel's own dependencies, and writes the result to
// CacheDir/prepared.json, whose path it returns.
func Prepare(ctx context.Context, cfg PrepareConfig) (*Prepared, string, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = discardLogger()
	}
	if cfg.E2ERoot == "" {
		return nil, "", errors.New("preparing the e2e suite: no e2e module directory")
	}
	if cfg.CacheDir == "" {
		d, err := defaultCacheDir()
		if err != nil {
			return nil, "", err
		}
		cfg.CacheDir = d
	}
	etcd, err := LookupEtcd()
	if err != nil {
		return nil, "", err
	}
	bins, err := NodeBinaries(cfg.E2ERoot)
	if err != nil {
		return nil, "", err
	}
	p := &Prepared{
		Binaries: map[string]string{"etcd": etcd},
		CielRoot: filepath.Dir(filepath.Dir(cfg.E2ERoot)),
		CacheDir: cfg.CacheDir,
	}
	builder := &Builder{Dir: filepath.Join(cfg.CacheDir, "bin"), Logger: logger}
	// Sorted by cost: a cold arm64 kubelet takes the longest.
	for _, name := range []string{"pause-amd64", "pause-arm64", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
		"kubelet", "kube-proxy", "coredns", "kaniko-executor-amd64", "kaniko-executor-arm64", "kubelet-arm64"} {
		path, _, err := builder.Ensure(ctx, bins[name])
		if err != nil {
			return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
		}
		p.Binaries[name] = path
	}
	tektonDir := filepath.Join(cfg.E2ERoot, "build", "tekton")
	for _, m := range []struct {
		mod string
		dst *string
	}{{"github.com/tektoncd/pipeline", &p.PipelineSrc}, {"github.com/tektoncd/triggers", &p.TriggersSrc}} {
		dir, err := sourceCopy(ctx, tektonDir, m.mod, filepath.Join(cfg.CacheDir, "src"), logger)
		if err != nil {
			return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
		}
		*m.dst = dir
		// Compile what ko will build inside the namespace, with ko's flags,
		// so that there it only links: on the host this overlaps the rest
		// of `make test` (test/run.sh starts Prepare first).
		if err := warmKoBuilds(ctx, dir, logger); err != nil {
			return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
		}
	}
	start := time.Now()
	if err := goModDownload(ctx, p.CielRoot); err != nil {
		return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
	}
	ko, err := cielTools(ctx, p.CielRoot)
	if err != nil {
		return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
	}
	p.Binaries["ko"] = ko
	if err := DownloadImageInputs(ctx, cfg.CacheDir); err != nil {
		return nil, "", fmt.Errorf("preparing the e2e suite: %w", err)
	}
	logger.Info("downloaded ciel's modules and installed its release tools", "ko", ko, "took", time.Since(start).Round(time.Millisecond))
	path := filepath.Join(cfg.CacheDir, "prepared.json")
	if err := p.Write(path); err != nil {
		return nil, "", fmt.Errorf("preparing the e2e suite: writing %s: %w", path, err)
	}
	return p, path, nil
}

// sourceCopy returns a writable copy of mod (at the version the build
// module in buildDir requires) under dstRoot/NAME@VERSION, with the
// dependencies of its commands in the module cache. An existing copy is
// reused.
func sourceCopy(ctx context.Context, buildDir, mod, dstRoot string, logger *slog.Logger) (string, error) {
	v, err := requiredVersion(buildDir, mod)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dstRoot, filepath.Base(mod)+"@"+v)
	done := dst + ".done"
	if _, err := os.Stat(done); err == nil {
		return dst, nil
	}
	start := time.Now()
	src, err := moduleDir(ctx, buildDir, mod)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := copyTree(src, dst); err != nil {
		return "", fmt.Errorf("copying %s@%s: %w", mod, v, err)
	}
	// Only what ko builds (./cmd/...): `go mod download` of everything
	// fails for Triggers v0.37.0, whose tool-only requirements (hack/)
	// include versions the proxy no longer serves.
	if err := goListDeps(ctx, dst, "./cmd/..."); err != nil {
		return "", err
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", err
	}
	logger.Info("copied module source", "module", mod, "version", v, "dir", dst, "took", time.Since(start).Round(time.Millisecond))
	return dst, nil
}

func goModDownload(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "mod", "download")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod download in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// cielTools runs `make tools` in ciel's repository (ko, at the version its
// Makefile pins, into bin/, so that `make release` later needs no module
// proxy) and returns the path of ko.
func cielTools(ctx context.Context, root string) (string, error) {
	mk := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "make", append([]string{"-s", "--no-print-directory", "-C", root}, args...)...)
		// Run from another make (make test), MAKEFLAGS would carry -w
		// (print the directory) into this one: start afresh.
		cmd.Env = append(os.Environ(), "GOWORK=off", "MAKEFLAGS=", "MAKELEVEL=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("make %s in %s: %w\n%s", strings.Join(args, " "), root, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := mk("tools"); err != nil {
		return "", err
	}
	ko, err := mk("--eval", "ciel-e2e-print-ko: ; @echo $(KO)", "ciel-e2e-print-ko")
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(ko); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("make tools in %s: no executable ko at %q", root, ko)
	}
	return ko, nil
}

// goListDeps downloads the modules providing pkgs and their dependencies.
func goListDeps(ctx context.Context, dir string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go list -deps %s in %s: %w\n%s", strings.Join(pkgs, " "), dir, err, stderr.String())
	}
	return nil
}

// copyTree copies the regular files, directories and symlinks under src to
// dst, making everything writable by its owner (the module cache is
// read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm()|0o200)
		}
		return nil
	})
}

// koRef is a ko:// reference in a release configuration.
var koRef = regexp.MustCompile(`ko://([A-Za-z0-9._/-]+)`)

// warmKoBuilds compiles every package dir's config/ names as ko://, as ko
// builds them (linux/amd64, -trimpath, no cgo), filling the Go build
// cache; once per copy (a stamp file next to it says it was done).
func warmKoBuilds(ctx context.Context, dir string, logger *slog.Logger) error {
	stamp := dir + ".compiled"
	if _, err := os.Stat(stamp); err == nil {
		return nil
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(dir, "config"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range koRef.FindAllSubmatch(b, -1) {
			seen[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	pkgs := make([]string, 0, len(seen))
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	start := time.Now()
	// Several main packages and no -o: go build compiles them and discards
	// the result.
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath"}, pkgs...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compiling %s for ko: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	logger.Info("compiled what ko builds", "dir", dir, "packages", len(pkgs), "took", time.Since(start).Round(time.Millisecond))
	return os.WriteFile(stamp, nil, 0o644)
}
