package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// tektonProject is one Tekton release BuildImages resolves.
type tektonProject struct {
	name   string // "pipeline", "triggers"
	module string
	src    string
}

// koJobs is `ko resolve -j`: how many images ko builds at once; "" keeps
// ko's default (GOMAXPROCS, 2 here). Measured on the 2-core machine shared
// with other builds (load average 1.4 to 7), Go build cache warm (every run
// still links and pushes every image: each test run's registry port is new,
// so the cached release files never apply there), seconds of ko for
// Pipelines v1.15.1 (8 images) / Triggers v0.37.0 (4 images), in run order:
//
//	default: 77.2/38.0, 36.5/30.6, 26.9/19.5, 41.2/28.5 (mean 45.5/29.2)
//	-j 1:    65.4/37.2, 68.3/46.1, 41.9/27.4, 77.7/42.7 (mean 63.3/38.4)
//
// Adjacent pairs at similar load: 26.9 (default) against 41.9 (-j 1). The
// default is about 1.4 times faster, so it stays. Cold caches were not
// compared (the build cache is shared): the first default run, with
// Triggers' dependencies partly cold, took 46.6/104.1.
var koJobs = ""

// TektonRepository is the repository prefix under the registry that ko
// pushes Tekton's images to (KO_DOCKER_REPO=REGISTRY/tekton).
const TektonRepository = "tekton"

func (b *imageBuilder) tekton(ctx context.Context, out *Images) error {
	p := b.cfg.Prepared
	projects := []struct {
		tektonProject
		dst *string
	}{
		{tektonProject{"pipeline", "github.com/tektoncd/pipeline", p.PipelineSrc}, &out.PipelineYAML},
		{tektonProject{"triggers", "github.com/tektoncd/triggers", p.TriggersSrc}, &out.TriggersYAML},
	}
	for _, proj := range projects {
		path, err := b.resolveTekton(ctx, proj.tektonProject, out.Static, out.Busybox)
		if err != nil {
			return fmt.Errorf("tekton %s: %w", proj.name, err)
		}
		*proj.dst = path
	}
	return nil
}

// resolveTekton returns the release file of a Tekton project with every
// ko:// image built and pushed: the cached one when all the images it names
// are still in the registry, else a fresh `ko resolve` of its config/.
func (b *imageBuilder) resolveTekton(ctx context.Context, proj tektonProject, static, busybox name.Digest) (string, error) {
	if proj.src == "" {
		return "", errors.New("the prepared manifest names no source copy")
	}
	version, err := requiredVersion(filepath.Join(b.cfg.ModuleRoot, "build", "tekton"), proj.module)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n", proj.module, version, static, busybox, b.cfg.Registry)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(b.cfg.Prepared.CacheDir, "tekton")
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.yaml", proj.name, version, key))
	if body, err := os.ReadFile(path); err == nil {
		n, err := b.verifyImages(ctx, body)
		if err == nil {
			b.log.Info("tekton release reused", "project", proj.name, "version", version, "images", n, "file", path)
			return path, nil
		}
		b.log.Info("tekton release resolved again", "project", proj.name, "reason", err)
	}
	ko, err := b.binary("ko")
	if err != nil {
		return "", err
	}
	// ko prefers .ko.yaml's base images to KO_DEFAULTBASEIMAGE: the copy's
	// file names only ours (no overrides: entrypoint, nop and
	// workingdirinit need no more than a static base, and the resolvers'
	// tini is dropped from their command below).
	if err := os.WriteFile(filepath.Join(proj.src, ".ko.yaml"), []byte("defaultBaseImage: "+static.String()+"\n"), 0o644); err != nil {
		return "", err
	}
	args := []string{"resolve", "--platform=linux/amd64", "--sbom=none", "--preserve-import-paths", "-R", "-f", "config/"}
	if koJobs != "" {
		args = append(args, "-j", koJobs)
	}
	cmd := exec.CommandContext(ctx, ko, args...)
	cmd.Dir = proj.src
	cmd.Env = append(os.Environ(),
		"KO_DOCKER_REPO="+b.cfg.Registry+"/"+TektonRepository,
		"KO_DEFAULTBASEIMAGE="+static.String(),
		"GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ko %s in %s: %w\n%s", strings.Join(args, " "), proj.src, err, koStderrTail(stderr.Bytes(), 4096))
	}
	took := time.Since(t0)
	body, err := postProcessTekton(proj.name, stdout.Bytes(), busybox)
	if err != nil {
		return "", err
	}
	n, err := b.verifyImages(ctx, body)
	if err != nil {
		return "", fmt.Errorf("after ko resolve: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	b.log.Info("tekton release resolved", "project", proj.name, "version", version, "images", n, "ko", took.Round(time.Millisecond), "file", path)
	return path, nil
}

var (
	// The -shell-image flag of Pipelines' controller in the flow sequence
	// of its args (as ko writes it back) or a block sequence.
	shellImageFlow  = regexp.MustCompile(`("-shell-image"\s*,\s*)"[^"]*"`)
	shellImageBlock = regexp.MustCompile(`(?m)^(\s*- "?-shell-image"?\n\s*- )\S+$`)
	// The resolvers' command runs tini, which upstream's base has and ours
	// does not: the program runs directly.
	tiniCommand = regexp.MustCompile(`(?m)^\s*- "?/sbin/tini"?\n\s*- "?--"?\n`)
)

// postProcessTekton points Pipelines' -shell-image at our busybox and drops
// tini from the resolvers' command; each edit must apply exactly once.
func postProcessTekton(project string, body []byte, busybox name.Digest) ([]byte, error) {
	if project != "pipeline" {
		return body, nil
	}
	n := len(shellImageFlow.FindAll(body, -1)) + len(shellImageBlock.FindAll(body, -1))
	if n != 1 {
		return nil, fmt.Errorf("expected one -shell-image flag in the resolved release, found %d", n)
	}
	body = shellImageFlow.ReplaceAll(body, []byte(`${1}"`+busybox.String()+`"`))
	body = shellImageBlock.ReplaceAll(body, []byte(`${1}`+busybox.String()))
	if n := len(tiniCommand.FindAll(body, -1)); n != 1 {
		return nil, fmt.Errorf("expected one tini command in the resolved release, found %d", n)
	}
	body = tiniCommand.ReplaceAll(body, nil)
	if bytes.Contains(body, []byte("tini")) {
		return nil, errors.New("the resolved release still names tini")
	}
	return body, nil
}

// verifyImages checks that every image of the registry that a release
// file names by digest is in the registry (HEAD), and returns their number.
func (b *imageBuilder) verifyImages(ctx context.Context, body []byte) (int, error) {
	re := regexp.MustCompile(regexp.QuoteMeta(b.cfg.Registry+"/"+TektonRepository+"/") + `[a-z0-9._/-]+@sha256:[0-9a-f]{64}`)
	refs := map[string]bool{}
	for _, m := range re.FindAll(body, -1) {
		refs[string(m)] = true
	}
	if len(refs) == 0 {
		return 0, errors.New("the release names no image of the registry")
	}
	for r := range refs {
		d, err := name.NewDigest(r, name.Insecure)
		if err != nil {
			return 0, err
		}
		if _, err := remote.Head(d, remote.WithContext(ctx)); err != nil {
			return 0, fmt.Errorf("image %s: %w", r, err)
		}
	}
	return len(refs), nil
}

func koStderrTail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
