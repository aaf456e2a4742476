package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Release is ciel's release as `make release` wrote it.
type Release struct {
	// File and ReporterFile are dist/release.yaml and dist/reporter.yaml.
	File, ReporterFile string
	// Version is the VERSION it was made with.
	Version string
	// Took is how long `make release` ran.
	Took time.Duration
}

// MakeRelease runs `make release` in repoRoot exactly as docs/install.md
// tells a user to (KO_DOCKER_REPO, VERSION, KO_DEFAULTBASEIMAGE for a base
// image mirror), writing into outDir. It runs inside the sealed network
// namespace, so every module must already be in the module cache (the
// host phase downloads them): GOPROXY=off makes a missing one an error
// rather than a network call.
func MakeRelease(ctx context.Context, repoRoot, repo, baseImage, version, outDir string) (*Release, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	r := &Release{File: filepath.Join(outDir, "release.yaml"), ReporterFile: filepath.Join(outDir, "reporter.yaml"), Version: version}
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "release",
		"KO_DOCKER_REPO="+repo, "VERSION="+version)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"KO_DEFAULTBASEIMAGE="+baseImage,
		"OUT="+r.File, "REPORTER_OUT="+r.ReporterFile,
		"GOPROXY=off", "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r.Took = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("make release KO_DOCKER_REPO=%s VERSION=%s: %w\n%s", repo, version, err, tailString(string(out), 6000))
	}
	return r, nil
}

func tailString(s string, max int) string {
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}
