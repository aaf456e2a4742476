package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/imagefs"
	"github.com/ciel-ci/ciel/test/e2e/baseimage"
)

// The base images PushBaseImages pushes, under BaseRepository, as the test
// project's Dockerfile (testdata/hello) names them.
const (
	BaseRepository = "ciel-e2e"
	BusyboxTag     = "busybox:1.35"
	GolangTag      = "golang:1.26"
)

// BasePlatforms are the platforms of the busybox base image.
var BasePlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

type baseImages struct {
	busybox v1.ImageIndex
	golang  v1.Image
}

// PushBaseImages pushes the test project's base images to the registry at
// host and returns the repository prefix they are under
// (HOST/ciel-e2e), the project's BASE_REGISTRY:
//
//   - busybox:1.35, an index of linux/amd64 and linux/arm64 images, each
//     Debian's busybox-static of that architecture (downloaded once into
//     the cache directory);
//   - golang:1.26, a linux/amd64 image only (it runs the host's Go: the
//     fake arm64 node is this amd64 host, so a build stage must run amd64
//     tools there, which a real arm64 node would not).
//
// The images are made once per test binary and are deterministic.
func (e *Env) PushBaseImages(t testing.TB, host string) string {
	t.Helper()
	e.baseOnce.Do(func() {
		start := time.Now()
		e.baseImages, e.baseErr = makeBaseImages(testContext(t), e.CacheDir, e.ModuleRoot)
		e.logger.Info("base images made", "took", time.Since(start).Round(time.Millisecond), "err", e.baseErr)
	})
	if e.baseErr != nil {
		t.Fatalf("making the base images: %v", e.baseErr)
	}
	prefix := host + "/" + BaseRepository
	push := func(tag string, w remote.Taggable) {
		ref, err := name.ParseReference(prefix + "/" + tag)
		if err != nil {
			t.Fatal(err)
		}
		var perr error
		switch x := w.(type) {
		case v1.ImageIndex:
			perr = remote.WriteIndex(ref, x, remote.WithContext(testContext(t)))
		case v1.Image:
			perr = remote.Write(ref, x, remote.WithContext(testContext(t)))
		}
		if perr != nil {
			t.Fatalf("pushing %s: %v", ref, perr)
		}
	}
	push(BusyboxTag, e.baseImages.busybox)
	push(GolangTag, e.baseImages.golang)
	return prefix
}

// makeBaseImages makes the test project's base images from the Debian
// busybox-static packages under cacheDir (downloaded there when missing)
// and the host's Go toolchain, trimmed for the e2e module at moduleRoot.
func makeBaseImages(ctx context.Context, cacheDir, moduleRoot string) (*baseImages, error) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the base images need a linux/amd64 host, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	cache := filepath.Join(cacheDir, "base-images")
	busybox := map[string]string{}
	for _, p := range BasePlatforms {
		bin, err := baseimage.DebianBusybox(ctx, cache, p.Architecture)
		if err != nil {
			return nil, err
		}
		busybox[p.Architecture] = bin
	}
	// The host runs the amd64 binary; both come from one Debian release,
	// so they have the same applets.
	applets, err := baseimage.Applets(ctx, busybox["amd64"])
	if err != nil {
		return nil, err
	}
	idx, err := imagefs.Index(BasePlatforms, func(p v1.Platform) (v1.Image, error) {
		return baseimage.Busybox(busybox[p.Architecture], applets, p)
	})
	if err != nil {
		return nil, err
	}
	goroot, err := goEnv(ctx, "GOROOT")
	if err != nil {
		return nil, err
	}
	goFiles, err := baseimage.GoToolchainFiles(ctx, goroot, filepath.Join(moduleRoot, "testdata", "hello"), BasePlatforms, ".")
	if err != nil {
		return nil, err
	}
	golang, err := baseimage.GoToolchain(busybox["amd64"], applets, goFiles, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		return nil, err
	}
	return &baseImages{busybox: idx, golang: golang}, nil
}
