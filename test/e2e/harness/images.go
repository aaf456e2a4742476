package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/test/e2e/baseimage"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

// The repositories and tags BuildImages pushes under
// REGISTRY/BaseRepository (the busybox and golang images keep BusyboxTag and
// GolangTag).
const (
	PauseTag  = "pause:e2e"
	KanikoTag = "kaniko-executor:e2e"
	GitTag    = "git:e2e"
	StaticTag = "static:e2e"
)

// ImagePlatforms are the platforms of every index BuildImages pushes.
var ImagePlatforms = BasePlatforms

// HostCABundle is the host's PEM bundle the images carry as their trusted
// CAs (Debian's ca-certificates).
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// ImagesConfig configures BuildImages.
type ImagesConfig struct {
	// Registry is the plain-HTTP registry's "host:port" (NODE_IP:5000 in
	// the sealed namespace).
	Registry string
	// Prepared names the binaries ("pause-amd64", "pause-arm64",
	// "kaniko-executor-amd64", "kaniko-executor-arm64", "ko"), the Tekton
	// module copies, ciel's repository and the cache directory.
	Prepared *Prepared
	// ModuleRoot is the e2e module's directory (default:
	// Prepared.CielRoot/test/e2e): the test project the golang image is
	// trimmed for and build/tekton's pinned versions.
	ModuleRoot string
	// SkipTekton leaves out the Tekton Pipelines and Triggers release
	// files (for tests of the images alone).
	SkipTekton bool
	// Logger receives one line per step (default: discard).
	Logger *slog.Logger
}

// Images are the images BuildImages pushed, by digest, and the Tekton
// release files it resolved against them.
type Images struct {
	// Pause is the sandbox image: an index (linux/amd64, linux/arm64) of
	// the pause program as /pause.
	Pause name.Digest
	// Kaniko is the Kaniko executor image: an index laid out like
	// upstream's executor image (/kaniko/executor, its CA bundle, an empty
	// Docker config, the same environment and entrypoint).
	Kaniko name.Digest
	// Git is an index of git from Debian's packages, for uid 65532 on a
	// read-only root filesystem.
	Git name.Digest
	// Static is the base of ko-built images: an index holding only
	// /etc/passwd and /etc/group (root, nonroot 65532), /tmp and the CA
	// bundle. ciel's `make release` takes it as KO_DEFAULTBASEIMAGE.
	Static name.Digest
	// Busybox and Golang are the test project's base images
	// (PushBaseImages); Busybox is also Tekton's -shell-image.
	Busybox name.Digest
	Golang  name.Digest
	// PipelineYAML and TriggersYAML are the resolved release files of
	// Tekton Pipelines and Triggers (empty with SkipTekton).
	PipelineYAML string
	TriggersYAML string
}

// BuildImages makes the cluster's images, pushes them to the registry and
// resolves Tekton's release configuration against them. It reads only
// local files (binaries, the cache DownloadImageInputs filled, the Tekton
// module copies with GOPROXY=off), so it runs inside the sealed network
// namespace. Pushing is idempotent: the registry only receives blobs it
// lacks, and resolved Tekton files whose images are all still in the
// registry are reused without running ko.
func BuildImages(ctx context.Context, cfg ImagesConfig) (*Images, error) {
	if cfg.Registry == "" || cfg.Prepared == nil {
		return nil, errors.New("images: a registry and the prepared manifest are required")
	}
	if cfg.Prepared.CacheDir == "" {
		return nil, errors.New("images: the prepared manifest names no cache directory")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("images: a linux/amd64 host is required, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ModuleRoot == "" {
		if cfg.Prepared.CielRoot == "" {
			return nil, errors.New("images: neither a module root nor ciel's repository is given")
		}
		cfg.ModuleRoot = filepath.Join(cfg.Prepared.CielRoot, "test", "e2e")
	}
	b := &imageBuilder{cfg: cfg, log: cfg.Logger}
	start := time.Now()
	var out Images
	steps := []struct {
		what string
		tag  string
		dst  *name.Digest
		make func(context.Context) (remote.Taggable, error)
	}{
		{"pause", PauseTag, &out.Pause, b.pauseIndex},
		{"kaniko executor", KanikoTag, &out.Kaniko, b.kanikoIndex},
		{"git", GitTag, &out.Git, b.gitIndex},
		{"static base", StaticTag, &out.Static, b.staticIndex},
	}
	for _, s := range steps {
		t0 := time.Now()
		img, err := s.make(ctx)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.what, err)
		}
		d, err := b.push(ctx, s.tag, img)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.what, err)
		}
		*s.dst = d
		b.log.Info("image pushed", "image", d.String(), "took", time.Since(t0).Round(time.Millisecond))
	}
	t0 := time.Now()
	base, err := makeBaseImages(ctx, cfg.Prepared.CacheDir, cfg.ModuleRoot)
	if err != nil {
		return nil, fmt.Errorf("images: base images: %w", err)
	}
	if out.Busybox, err = b.push(ctx, BusyboxTag, base.busybox); err != nil {
		return nil, fmt.Errorf("images: busybox: %w", err)
	}
	if out.Golang, err = b.push(ctx, GolangTag, base.golang); err != nil {
		return nil, fmt.Errorf("images: golang: %w", err)
	}
	b.log.Info("base images pushed", "busybox", out.Busybox.String(), "golang", out.Golang.String(), "took", time.Since(t0).Round(time.Millisecond))
	if !cfg.SkipTekton {
		if err := b.tekton(ctx, &out); err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
	}
	b.log.Info("images ready", "took", time.Since(start).Round(time.Millisecond))
	return &out, nil
}

type imageBuilder struct {
	cfg ImagesConfig
	log *slog.Logger
}

// push writes an image or index as REGISTRY/BaseRepository/tag and returns
// its digest reference.
func (b *imageBuilder) push(ctx context.Context, tag string, w remote.Taggable) (name.Digest, error) {
	ref, err := name.ParseReference(b.cfg.Registry+"/"+BaseRepository+"/"+tag, name.Insecure)
	if err != nil {
		return name.Digest{}, err
	}
	var d v1.Hash
	switch x := w.(type) {
	case v1.ImageIndex:
		if d, err = x.Digest(); err == nil {
			err = remote.WriteIndex(ref, x, remote.WithContext(ctx))
		}
	case v1.Image:
		if d, err = x.Digest(); err == nil {
			err = remote.Write(ref, x, remote.WithContext(ctx))
		}
	default:
		err = fmt.Errorf("%T is neither an image nor an index", w)
	}
	if err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return ref.Context().Digest(d.String()), nil
}

// binary returns the path of a prepared binary.
func (b *imageBuilder) binary(key string) (string, error) {
	p := b.cfg.Prepared.Binaries[key]
	if p == "" {
		return "", fmt.Errorf("the prepared manifest has no binary %q", key)
	}
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("binary %q: %s is not a file (%v)", key, p, err)
	}
	return p, nil
}

// pauseIndex is the sandbox image: /pause, run as 65535 like Kubernetes'
// own pause image.
func (b *imageBuilder) pauseIndex(context.Context) (remote.Taggable, error) {
	return imagefs.Index(ImagePlatforms, func(p v1.Platform) (v1.Image, error) {
		bin, err := b.binary("pause-" + p.Architecture)
		if err != nil {
			return nil, err
		}
		l, err := imagefs.Layer([]imagefs.File{{Path: "pause", Mode: 0o755, Source: bin}})
		if err != nil {
			return nil, err
		}
		return imagefs.Image(p, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, l)
	})
}

// KanikoExecutorEnv is the environment of upstream's executor image
// (gcr.io/kaniko-project/executor, deploy/Dockerfile), which ours repeats.
var KanikoExecutorEnv = []string{
	"HOME=/root",
	"USER=root",
	"PATH=/usr/local/bin:/kaniko",
	"SSL_CERT_DIR=/kaniko/ssl/certs",
	"DOCKER_CONFIG=/kaniko/.docker/",
	"DOCKER_CREDENTIAL_GCR_CONFIG=/kaniko/.config/gcloud/docker_credential_gcr_config.json",
}

// imageNsswitch makes Go programs consult /etc/hosts before DNS.
const imageNsswitch = "hosts: files dns\n"

// kanikoIndex lays out upstream's executor image without its credential
// helpers: /kaniko (world-writable, for non-root runs), the executor, the
// host's CA bundle in /kaniko/ssl/certs, an empty Docker config, and
// /workspace as working directory.
func (b *imageBuilder) kanikoIndex(context.Context) (remote.Taggable, error) {
	return imagefs.Index(ImagePlatforms, func(p v1.Platform) (v1.Image, error) {
		bin, err := b.binary("kaniko-executor-" + p.Architecture)
		if err != nil {
			return nil, err
		}
		l, err := imagefs.Layer([]imagefs.File{
			{Path: "etc", Mode: fs.ModeDir | 0o755},
			{Path: "etc/imageNsswitch.conf", Mode: 0o644, Body: []byte(imageNsswitch)},
			{Path: "kaniko", Mode: fs.ModeDir | 0o777},
			{Path: "kaniko/executor", Mode: 0o755, Source: bin},
			{Path: "kaniko/.docker", Mode: fs.ModeDir | 0o755},
			{Path: "kaniko/.docker/config.json", Mode: 0o644, Body: []byte("{}\n")},
			{Path: "kaniko/ssl", Mode: fs.ModeDir | 0o755},
			{Path: "kaniko/ssl/certs", Mode: fs.ModeDir | 0o755},
			{Path: "kaniko/ssl/certs/ca-certificates.crt", Mode: 0o644, Source: HostCABundle},
			{Path: "workspace", Mode: fs.ModeDir | 0o755},
		})
		if err != nil {
			return nil, err
		}
		return imagefs.Image(p, v1.Config{
			Env:        KanikoExecutorEnv,
			Entrypoint: []string{"/kaniko/executor"},
			WorkingDir: "/workspace",
		}, l)
	})
}

// NonrootUID is the user the static base and the git image name "nonroot".
const NonrootUID = 65532

// staticFiles is the static base's root filesystem (like distroless
// static's, without /home/nonroot: every layer's files belong to root).
func staticFiles() []imagefs.File {
	return []imagefs.File{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/passwd", Mode: 0o644, Body: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonrootUID, NonrootUID))},
		{Path: "etc/group", Mode: 0o644, Body: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonrootUID))},
		{Path: "etc/imageNsswitch.conf", Mode: 0o644, Body: []byte(imageNsswitch)},
		{Path: "etc/ssl", Mode: fs.ModeDir | 0o755},
		{Path: "etc/ssl/certs", Mode: fs.ModeDir | 0o755},
		{Path: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Source: HostCABundle},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// staticEnv is distroless static's environment.
var staticEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + HostCABundle,
}

func (b *imageBuilder) staticIndex(context.Context) (remote.Taggable, error) {
	l, err := imagefs.Layer(staticFiles())
	if err != nil {
		return nil, err
	}
	return imagefs.Index(ImagePlatforms, func(p v1.Platform) (v1.Image, error) {
		return imagefs.Image(p, v1.Config{Env: staticEnv}, l)
	})
}

// gitIndex is git with its Debian dependency closure (GitRoot) plus the
// static base's files, as nonroot by default. Git writes only under the
// repository it is given and $HOME; nothing in the image needs writing.
func (b *imageBuilder) gitIndex(context.Context) (remote.Taggable, error) {
	return imagefs.Index(ImagePlatforms, func(p v1.Platform) (v1.Image, error) {
		root, err := GitRoot(b.cfg.Prepared.CacheDir, p.Architecture)
		if err != nil {
			return nil, err
		}
		files, err := treeFiles(root, gitSkip)
		if err != nil {
			return nil, err
		}
		have := map[string]bool{}
		for _, f := range files {
			have[f.Path] = true
		}
		for _, f := range staticFiles() {
			if f.Mode.IsDir() && have[f.Path] {
				continue
			}
			if have[f.Path] {
				return nil, fmt.Errorf("the Debian packages already hold /%s", f.Path)
			}
			files = append(files, f)
		}
		l, err := imagefs.Layer(files)
		if err != nil {
			return nil, err
		}
		return imagefs.Image(p, v1.Config{
			Env:        []string{"PATH=" + baseimage.DefaultPath},
			Entrypoint: []string{"/usr/bin/git"},
			User:       fmt.Sprint(NonrootUID),
		}, l)
	})
}

// gitSkip are the directories of the Debian packages the git image leaves
// out: documentation and translations.
var gitSkip = map[string]bool{
	"usr/share/doc": true, "usr/share/man": true, "usr/share/info": true,
	"usr/share/locale": true, "usr/share/lintian": true, "usr/share/bug": true,
}

// treeFiles lists the directory tree at root, but for the directories
// skip names (relative, slash-separated), as layer entries (hard links
// become copies).
func treeFiles(root string, skip map[string]bool) ([]imagefs.File, error) {
	var files []imagefs.File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch m := st.Mode(); {
		case m.IsDir():
			files = append(files, imagefs.File{Path: rel, Mode: fs.ModeDir | m.Perm()})
		case m&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files = append(files, imagefs.File{Path: rel, Mode: fs.ModeSymlink, Link: t})
		case m.IsRegular():
			files = append(files, imagefs.File{Path: rel, Mode: m.Perm(), Source: p})
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, m.Type())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", root, err)
	}
	return files, nil
}

var imageInputsMu sync.Mutex

// DownloadImageInputs fetches, in the host phase, what BuildImages needs
// from Debian's archive into cacheDir: busybox-static for the base images
// and git with its dependency closure for the git image, for each of
// ImagePlatforms. What is in the cache already is not fetched again.
func DownloadImageInputs(ctx context.Context, cacheDir string) error {
	imageInputsMu.Lock()
	defer imageInputsMu.Unlock()
	for _, p := range ImagePlatforms {
		if _, err := baseimage.DebianBusybox(ctx, filepath.Join(cacheDir, "base-images"), p.Architecture); err != nil {
			return err
		}
		if err := downloadGit(ctx, cacheDir, p.Architecture); err != nil {
			return fmt.Errorf("git for %s: %w", p.Architecture, err)
		}
	}
	return nil
}

// gitDir is the cache directory of the git packages of one architecture.
func gitDir(cacheDir, arch string) string {
	return filepath.Join(cacheDir, "images", "git", arch)
}

// gitManifest is the file, written last, listing the packages unpacked in
// the root.
const gitManifest = "packages.txt"

// GitRoot returns the unpacked git packages of a Debian architecture that
// DownloadImageInputs left in cacheDir.
func GitRoot(cacheDir, arch string) (string, error) {
	dir := gitDir(cacheDir, arch)
	if _, err := os.Stat(filepath.Join(dir, gitManifest)); err != nil {
		return "", fmt.Errorf("git for %s is not in the cache (%s): run DownloadImageInputs in the host phase: %w", arch, dir, err)
	}
	return filepath.Join(dir, "root"), nil
}

func downloadGit(ctx context.Context, cacheDir, arch string) error {
	dir := gitDir(cacheDir, arch)
	if _, err := os.Stat(filepath.Join(dir, gitManifest)); err == nil {
		return nil
	}
	apt := newAptRoot(dir, arch)
	if err := apt.init(); err != nil {
		return err
	}
	if _, err := apt.run(ctx, "apt-get", "update"); err != nil {
		return err
	}
	pkgs, err := apt.closure(ctx, "git")
	if err != nil {
		return err
	}
	debs := filepath.Join(dir, "debs")
	if err := os.RemoveAll(debs); err != nil {
		return err
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	args := []string{"download"}
	for _, p := range pkgs {
		args = append(args, p+":"+arch)
	}
	if _, err := apt.runIn(ctx, debs, "apt-get", args...); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil {
		return err
	}
	if len(files) != len(pkgs) {
		return fmt.Errorf("apt-get download left %d packages for %d names", len(files), len(pkgs))
	}
	tmp := filepath.Join(dir, fmt.Sprintf("root.tmp-%d", os.Getpid()))
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	for _, f := range files {
		if out, err := runImageCmd(ctx, "", "dpkg-deb", "-x", f, tmp); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "usr", "bin", "git")); err != nil {
		return fmt.Errorf("the packages hold no usr/bin/git: %w", err)
	}
	root := filepath.Join(dir, "root")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := os.Rename(tmp, root); err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if err := os.WriteFile(filepath.Join(dir, gitManifest), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	// The package lists and the packages (58 MB per architecture) served
	// only to make the root.
	for _, d := range []string{"lists", "cache", "debs"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	return nil
}

// Child is one image of an index: its platform as its config states it
// ("linux/arm64") and its digest.
type Child struct {
	Platform string
	Digest   v1.Hash
}

// IndexChildren reads every image of idx, in the index's order; a child
// whose descriptor names another platform than its config is an error.
func IndexChildren(idx v1.ImageIndex) ([]Child, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Child
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		if d.Platform == nil || d.Platform.OS != cf.OS || d.Platform.Architecture != cf.Architecture {
			return nil, fmt.Errorf("child %s: the index says %v, its config %s/%s", d.Digest, d.Platform, cf.OS, cf.Architecture)
		}
		out = append(out, Child{Platform: cf.OS + "/" + cf.Architecture, Digest: d.Digest})
	}
	return out, nil
}
