package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/registrytest"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

func TestParseAptClosure(t *testing.T) {
	out := []byte(`git
  Depends: libc6
  Depends: <perl:any>
    perl
libc6
  PreDepends: libgcc-s1
<perl:any>
perl
  PreDepends: perl-base
libc6
gcc-12-base:amd64
`)
	want := []string{"gcc-12-base", "git", "libc6", "perl"}
	if diff := cmp.Diff(want, parseAptClosure(out)); diff != "" {
		t.Errorf("closure (-want +got):\n%s", diff)
	}
}

func TestPostProcessTekton(t *testing.T) {
	busybox, err := name.NewDigest("10.255.255.1:5000/ciel-e2e/busybox@sha256:"+strings.Repeat("a", 64), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	const resolvers = `      containers:
      - name: controller
        image: 10.255.255.1:5000/tekton/resolvers@sha256:x
        command:
        - /sbin/tini
        - --
        - /ko-app/resolvers
        args: []
`
	const resolversWant = `      containers:
      - name: controller
        image: 10.255.255.1:5000/tekton/resolvers@sha256:x
        command:
        - /ko-app/resolvers
        args: []
`
	tests := []struct {
		name, project, in, want, wantErr string
	}{
		{
			name: "flow args", project: "pipeline",
			in:   `args: ["-shell-image", "cgr.dev/chainguard/busybox@sha256:19f0", "-shell-image-win", "mcr.microsoft.com/powershell:nanoserver@sha256:b6d5"]` + "\n" + resolvers,
			want: `args: ["-shell-image", "` + busybox.String() + `", "-shell-image-win", "mcr.microsoft.com/powershell:nanoserver@sha256:b6d5"]` + "\n" + resolversWant,
		},
		{
			name: "block args", project: "pipeline",
			in:   "        args:\n        - -shell-image\n        - cgr.dev/chainguard/busybox@sha256:19f0\n        - -shell-image-win\n        - x\n" + resolvers,
			want: "        args:\n        - -shell-image\n        - " + busybox.String() + "\n        - -shell-image-win\n        - x\n" + resolversWant,
		},
		{name: "no shell image", project: "pipeline", in: resolvers, wantErr: "found 0"},
		{name: "no tini", project: "pipeline", in: `args: ["-shell-image", "x"]` + "\n", wantErr: "tini command"},
		{name: "triggers untouched", project: "triggers", in: "anything\n", want: "anything\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := postProcessTekton(tc.project, []byte(tc.in), busybox)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// imagesTestCache is the cache the images test shares across runs
// (Debian packages, the built test binaries, resolved Tekton files).
func imagesTestCache(t *testing.T) string {
	t.Helper()
	d, err := defaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// skipOrFail skips the test, or fails it when CIEL_REQUIRE_REAL=1.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// buildTestBinaries builds the Kaniko executor (build/kaniko) and a pause
// program for both platforms into dir.
func buildTestBinaries(t *testing.T, ctx context.Context, moduleRoot, dir string) map[string]string {
	t.Helper()
	pauseSrc := t.TempDir()
	write(t, filepath.Join(pauseSrc, "go.mod"), "module pause\n\ngo 1.26\n")
	write(t, filepath.Join(pauseSrc, "main.go"), `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
`)
	bins := map[string]string{}
	for _, p := range ImagePlatforms {
		for _, b := range []struct{ key, dir, pkg string }{
			{"kaniko-executor-", filepath.Join(moduleRoot, "build", "kaniko"), "github.com/GoogleContainerTools/kaniko/cmd/executor"},
			{"pause-", pauseSrc, "."},
		} {
			out := filepath.Join(dir, b.key+p.Architecture)
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, b.pkg)
			cmd.Dir = b.dir
			cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.Architecture)
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("building %s for %s: %v\n%s", b.pkg, p.Architecture, err, o)
			}
			bins[b.key+p.Architecture] = out
		}
	}
	return bins
}

// TestBuildImages builds every image into a real registry (docker-registry)
// and checks their platforms and configs, and runs the amd64 git image's
// git as uid 65532 on a read-only root against a local repository. With
// CIEL_E2E_IMAGES_TEKTON=1 it also resolves Tekton Pipelines and Triggers
// (CIEL_E2E_KO: ko; CIEL_E2E_PIPELINE_SRC, CIEL_E2E_TRIGGERS_SRC: writable
// module copies), twice: the second run must reuse the cached files.
func TestBuildImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and pushes images")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "running git in the image's root needs root (chroot, mounts)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	moduleRoot, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	cache := imagesTestCache(t)
	start := time.Now()
	if err := DownloadImageInputs(ctx, cache); err != nil {
		skipOrFail(t, "downloading the Debian packages (the host phase needs the Debian mirror): %v", err)
	}
	t.Logf("DownloadImageInputs took %s", time.Since(start).Round(time.Millisecond))
	binDir := filepath.Join(cache, "images-test", "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	bins := buildTestBinaries(t, ctx, moduleRoot, binDir)
	t.Logf("test binaries built in %s", time.Since(start).Round(time.Millisecond))
	prep := &Prepared{Binaries: bins, CacheDir: cache, CielRoot: filepath.Dir(filepath.Dir(moduleRoot))}
	tekton := os.Getenv("CIEL_E2E_IMAGES_TEKTON") == "1"
	if tekton {
		prep.Binaries["ko"] = os.Getenv("CIEL_E2E_KO")
		prep.PipelineSrc = os.Getenv("CIEL_E2E_PIPELINE_SRC")
		prep.TriggersSrc = os.Getenv("CIEL_E2E_TRIGGERS_SRC")
		if j, ok := os.LookupEnv("CIEL_E2E_KO_JOBS"); ok {
			// Measuring ko's parallelism (koJobs).
			old := koJobs
			koJobs = j
			t.Cleanup(func() { koJobs = old })
		}
	}
	reg := registrytest.Start(t)
	cfg := ImagesConfig{
		Registry:   reg.Host,
		Prepared:   prep,
		ModuleRoot: moduleRoot,
		SkipTekton: !tekton,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	start = time.Now()
	imgs, err := BuildImages(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BuildImages (cold registry) took %s", time.Since(start).Round(time.Millisecond))

	for _, d := range []name.Digest{imgs.Pause, imgs.Kaniko, imgs.Git, imgs.Static, imgs.Busybox} {
		checkPlatforms(t, ctx, d)
	}
	t.Run("kaniko config", func(t *testing.T) {
		img := platformImage(t, ctx, imgs.Kaniko, "amd64")
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := v1.Config{
			Env: []string{
				"HOME=/root", "USER=root", "PATH=/usr/local/bin:/kaniko", "SSL_CERT_DIR=/kaniko/ssl/certs",
				"DOCKER_CONFIG=/kaniko/.docker/",
				"DOCKER_CREDENTIAL_GCR_CONFIG=/kaniko/.config/gcloud/docker_credential_gcr_config.json",
			},
			Entrypoint: []string{"/kaniko/executor"},
			WorkingDir: "/workspace",
		}
		if diff := cmp.Diff(want, cf.Config); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
		root := unpack(t, img)
		ca, err := os.ReadFile(HostCABundle)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct{ path, want string }{
			{"kaniko/ssl/certs/ca-certificates.crt", string(ca)},
			{"kaniko/.docker/config.json", "{}\n"},
		} {
			b, err := os.ReadFile(filepath.Join(root, f.path))
			if err != nil || string(b) != f.want {
				t.Errorf("/%s: %v, content differs: %t", f.path, err, string(b) != f.want)
			}
		}
		out, err := exec.CommandContext(ctx, filepath.Join(root, "kaniko", "executor"), "version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Kaniko version") {
			t.Errorf("/kaniko/executor version: %v\n%s", err, out)
		}
	})
	t.Run("static base", func(t *testing.T) {
		root := unpack(t, platformImage(t, ctx, imgs.Static, "arm64"))
		passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
		if err != nil || !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
			t.Errorf("/etc/passwd: %v\n%s", err, passwd)
		}
		st, err := os.Stat(filepath.Join(root, "tmp"))
		if err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
			t.Errorf("/tmp: %v %v", st.Mode(), err)
		}
	})
	t.Run("pause", func(t *testing.T) {
		cf, err := platformImage(t, ctx, imgs.Pause, "arm64").ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"/pause"}, cf.Config.Entrypoint); diff != "" {
			t.Errorf("entrypoint (-want +got):\n%s", diff)
		}
	})
	t.Run("git as nonroot on a read-only root", func(t *testing.T) {
		runGitImage(t, ctx, platformImage(t, ctx, imgs.Git, "amd64"))
	})
	t.Run("arm64 git loads its libraries", func(t *testing.T) {
		qemu, err := exec.LookPath("qemu-aarch64-static")
		if err != nil {
			skipOrFail(t, "no qemu-aarch64-static (Debian qemu-user-static): %v", err)
		}
		root := unpack(t, platformImage(t, ctx, imgs.Git, "arm64"))
		// -L makes the emulated loader and libraries come from the image.
		out, err := exec.CommandContext(ctx, qemu, "-L", root, filepath.Join(root, "usr", "bin", "git"), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "git version 2.") {
			t.Errorf("arm64 git --version: %v\n%s", err, out)
		}
		// git-remote-https (libcurl, GnuTLS) prints its usage and fails;
		// a missing library would stop it earlier.
		out, _ = exec.CommandContext(ctx, qemu, "-L", root, filepath.Join(root, "usr", "lib", "git-core", "git-remote-https")).CombinedOutput()
		if !strings.Contains(string(out), "usage: git remote-curl") {
			t.Errorf("arm64 git-remote-https:\n%s", out)
		}
	})

	start = time.Now()
	again, err := BuildImages(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BuildImages (warm registry) took %s", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff(imgs, again, cmp.Comparer(func(a, b name.Digest) bool { return a.String() == b.String() })); diff != "" {
		t.Errorf("a second run gave other images (-first +second):\n%s", diff)
	}
	if tekton {
		for _, f := range []string{imgs.PipelineYAML, imgs.TriggersYAML} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range []string{"ko://", "cgr.dev/chainguard/busybox@", "/sbin/tini"} {
				if bytes.Contains(b, []byte(bad)) {
					t.Errorf("%s still names %s", f, bad)
				}
			}
		}
		b, err := os.ReadFile(imgs.PipelineYAML)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"-shell-image", "` + imgs.Busybox.String() + `"`; !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s: no %s", imgs.PipelineYAML, want)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// checkPlatforms checks that an index holds linux/amd64 and linux/arm64
// images whose configs say so.
func checkPlatforms(t *testing.T, ctx context.Context, d name.Digest) {
	t.Helper()
	idx, err := remote.Index(d, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	children, err := IndexChildren(idx)
	if err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	var got []string
	for _, c := range children {
		got = append(got, c.Platform)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, got); diff != "" {
		t.Errorf("%s platforms (-want +got):\n%s", d, diff)
	}
}

// platformImage pulls one architecture's image of an index.
func platformImage(t *testing.T, ctx context.Context, d name.Digest, arch string) v1.Image {
	t.Helper()
	img, err := remote.Image(d, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// unpack writes an image's file system into a new directory.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	err := imagefs.Walk(img, func(h *tar.Header, r io.Reader) error {
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			return fmt.Errorf("layer entry %q escapes the root", h.Name)
		}
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(r); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode).Perm())
			}
		default:
			return fmt.Errorf("layer entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
		if err != nil || h.Typeflag == tar.TypeSymlink {
			return err
		}
		// Modes as in the layer, setgid/sticky included (umask aside).
		mode := os.FileMode(h.Mode).Perm()
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runGitImage runs the image's git the way the kaniko-build Task's clone
// steps do (init, fetch --depth=1, checkout) as uid 65532 with the image's
// root mounted read-only and HOME in the writable workspace, fetching a
// repository made by the host's git.
func runGitImage(t *testing.T, ctx context.Context, img v1.Image) {
	root := unpack(t, img)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532" {
		t.Errorf("user %q, want 65532", cf.Config.User)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"workspace", "dev"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ws := t.TempDir()
	src := filepath.Join(ws, "src")
	hostGit := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		skipOrFail(t, "the host has no git to make the source repository: %v", err)
	}
	hostGit("init", "-q", "-b", "main", src)
	write(t, filepath.Join(src, "Dockerfile"), "FROM scratch\n")
	hostGit("-C", src, "add", "Dockerfile")
	hostGit("-C", src, "commit", "-q", "-m", "first")
	if err := os.MkdirAll(filepath.Join(ws, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The source is served over HTTPS by the host's git-http-backend (as a
	// GitLab would), so the clone runs git-remote-https, libcurl and the
	// TLS stack of the image; the server's CA is given like the Task's
	// git-auth workspace would.
	srv := httptest.NewTLSServer(&cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env: []string{"GIT_PROJECT_ROOT=" + ws, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*"},
	})
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	write(t, filepath.Join(ws, "home", "ca.pem"), string(caPEM))
	if out, err := exec.CommandContext(ctx, "chown", "-R", "65532:65532", ws).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	// A private mount namespace: the root bound read-only onto itself,
	// the workspace writable inside it, /dev from the host.
	script := `set -e
mount --bind "$ROOT" "$ROOT"
mount -o remount,bind,ro "$ROOT"
mount --bind "$WS" "$ROOT/workspace"
mount --rbind /dev "$ROOT/dev"
run() { env -i HOME=/workspace/home PATH=/usr/bin:/bin GIT_SSL_CAINFO=/workspace/home/ca.pem \
  GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=/workspace/out GIT_TERMINAL_PROMPT=0 \
  GIT_ALLOW_PROTOCOL=https /usr/sbin/chroot --userspec=65532:65532 "$ROOT" "$@"; }
if touch "$ROOT/usr/probe" 2>/dev/null; then echo "the root is writable" >&2; exit 1; fi
run git init --quiet /workspace/out
run git -C /workspace/out fetch --quiet --depth=1 --no-tags -- "$URL" main
run git -C /workspace/out checkout --quiet FETCH_HEAD
run git --version
id=$(stat -c %u "$WS/out/Dockerfile"); echo "owner=$id"
`
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "ROOT="+root, "WS="+ws, "URL="+srv.URL+"/src")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git in the image: %v\n%s", err, out)
	}
	t.Logf("git in the image:\n%s", out)
	if strings.Contains(string(out), "error while loading shared libraries") {
		t.Errorf("a git program misses a library:\n%s", out)
	}
	if !strings.Contains(string(out), "git version 2.") || !strings.Contains(string(out), "owner=65532") {
		t.Errorf("unexpected output:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(ws, "out", "Dockerfile"))
	if err != nil || string(b) != "FROM scratch\n" {
		t.Errorf("checked-out Dockerfile: %q, %v", b, err)
	}
}

// TestVerifyImagesAgainstRegistry checks the warm-run decision against a
// real registry: a release file is reused only when every image of the
// registry it names by digest is there.
func TestVerifyImagesAgainstRegistry(t *testing.T) {
	reg := registrytest.Start(t)
	ctx := context.Background()
	idx, err := imagefs.Index(ImagePlatforms, func(p v1.Platform) (v1.Image, error) {
		l, err := imagefs.Layer([]imagefs.File{{Path: "x", Mode: 0o644, Body: []byte(p.Architecture)}})
		if err != nil {
			return nil, err
		}
		return imagefs.Image(p, v1.Config{}, l)
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/"+TektonRepository+"/github.com/tektoncd/pipeline/cmd/nop:x", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	present := ref.Context().Digest(d.String()).String()
	missing := reg.Host + "/" + TektonRepository + "/github.com/tektoncd/pipeline/cmd/webhook@sha256:" + strings.Repeat("0", 64)
	b := &imageBuilder{cfg: ImagesConfig{Registry: reg.Host}}
	tests := []struct {
		name    string
		body    string
		want    int
		wantErr string
	}{
		{"all present", "image: " + present + "\nargs: [\"-nop-image\", \"" + present + "\"]\n", 1, ""},
		{"one missing", "image: " + present + "\nimage: " + missing + "\n", 0, "cmd/webhook"},
		{"none of the registry", "image: cgr.dev/chainguard/busybox@sha256:" + strings.Repeat("1", 64) + "\n", 0, "names no image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := b.verifyImages(ctx, []byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want {
				t.Fatalf("verifyImages = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}
