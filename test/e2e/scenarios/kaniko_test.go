package scenarios

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/test/e2e/harness"
	"github.com/ciel-ci/ciel/test/e2e/podrunner"
)

// helloProject copies the test project (testdata/hello) into dir, with its
// Dockerfile's BASE_REGISTRY default pointed at baseRegistry, where
// PushBaseImages put the bases.
func helloProject(t *testing.T, env *harness.Env, dir, baseRegistry string) {
	t.Helper()
	src := filepath.Join(env.ModuleRoot, "testdata", "hello")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "Dockerfile" {
			const def = "ARG BASE_REGISTRY=docker.io/library\n"
			if !bytes.Contains(b, []byte(def)) {
				t.Fatalf("testdata/hello/Dockerfile has no %q line", strings.TrimSpace(def))
			}
			b = bytes.Replace(b, []byte(def), []byte("ARG BASE_REGISTRY="+baseRegistry+"\n"), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// imageFiles returns the regular files of img's flattened filesystem whose
// paths (without the leading slash) are in want.
func imageFiles(t *testing.T, img v1.Image, want ...string) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	got := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("reading the image's filesystem: %v", err)
		}
		p := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		for _, w := range want {
			if p == w && h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				got[p] = b
			}
		}
	}
}

// elfMachine names the architecture an ELF program was built for.
func elfMachine(t *testing.T, b []byte) string {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not an ELF program: %v", err)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	}
	return f.Machine.String()
}

// checkHelloImage checks an image of the test project built for
// linux/arch: its config, its program's and its base's ELF machine, and
// that only the amd64 image holds what the amd64 stage's RUN wrote.
func checkHelloImage(t *testing.T, img v1.Image, arch string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("linux/%s image: config says %s/%s", arch, cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/hello" {
		t.Errorf("linux/%s image: user %q, entrypoint %q; want the Dockerfile's", arch, cf.Config.User, cf.Config.Entrypoint)
	}
	files := imageFiles(t, img, "usr/local/bin/hello", "etc/hello-build", "bin/busybox")
	if got := elfMachine(t, files["usr/local/bin/hello"]); got != arch {
		t.Errorf("linux/%s image: /usr/local/bin/hello is built for %s", arch, got)
	}
	if got := elfMachine(t, files["bin/busybox"]); got != arch {
		t.Errorf("linux/%s image: the base's /bin/busybox is %s", arch, got)
	}
	built, ok := files["etc/hello-build"]
	switch {
	case arch == "amd64" && string(built) != "hello from linux/amd64\n":
		t.Errorf("linux/amd64 image: /etc/hello-build, which its RUN writes, holds %q", built)
	case arch != "amd64" && ok:
		t.Errorf("linux/%s image has /etc/hello-build, which only the amd64 stage RUNs", arch)
	}
}

// kanikoStep is a build step as Tekton renders the kaniko-build Task's
// (the source workspace, the results directory), for podrunner.Kaniko
// directly.
func kanikoStep(t *testing.T, source string, out io.Writer, args ...string) (*podrunner.Step, string) {
	t.Helper()
	results := t.TempDir()
	return &podrunner.Step{
		Command:    append([]string{podrunner.KanikoExecutorPath}, args...),
		Env:        []string{"DOCKER_CONFIG=/kaniko/.docker", "SSL_CERT_DIR=/kaniko/ssl/certs:/etc/ssl/certs:"},
		WorkingDir: "/workspace/source",
		Mounts: podrunner.Mounts{
			{ContainerPath: "/tekton/results", HostPath: results},
			{ContainerPath: "/workspace/source", HostPath: source},
		},
		OS: "linux", Arch: "amd64",
		Stdout: out, Stderr: out,
		ScratchDir: t.TempDir(),
	}, filepath.Join(results, "IMAGE_DIGEST")
}

// TestKanikoRunsTheRenderedStep runs the real Kaniko executor the way the
// pod runner does for a kaniko-build pod, without the control plane: the
// test project for linux/amd64 (its RUN executes) and linux/arm64 (only
// COPYs after the cross-compiling build stage), then a failing RUN and a
// command the executor image does not have.
func TestKanikoRunsTheRenderedStep(t *testing.T) {
	env := suite.Env(t)
	k, err := env.Kaniko()
	if err != nil {
		t.Fatal(err)
	}
	reg := env.StartRegistry(t)
	base := env.PushBaseImages(t, reg.Host)
	source := filepath.Join(t.TempDir(), "source")
	helloProject(t, env, source, base)

	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			var log bytes.Buffer
			dest := reg.Host + "/direct/hello:" + arch
			s, digestFile := kanikoStep(t, source, &log,
				"--dockerfile=./Dockerfile", "--context=dir:///workspace/source/.",
				"--digest-file=/tekton/results/IMAGE_DIGEST", "--reproducible=true", "--skip-unused-stages=true",
				"--destination="+dest, "--custom-platform=linux/"+arch,
				"--build-arg=TARGETOS=linux", "--build-arg=TARGETARCH="+arch)
			if err := k.Execute(context.Background(), s); err != nil {
				t.Fatalf("kaniko: %v\n%s", err, log.String())
			}
			digest, err := os.ReadFile(digestFile)
			if err != nil {
				t.Fatalf("the digest file: %v\n%s", err, log.String())
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).Match(digest) {
				t.Fatalf("digest file holds %q", digest)
			}
			img, err := remote.Image(mustRef(t, reg.Host+"/direct/hello@"+string(digest)))
			if err != nil {
				t.Fatalf("the pushed image: %v", err)
			}
			checkHelloImage(t, img, arch)
		})
	}

	t.Run("failing RUN", func(t *testing.T) {
		dir := t.TempDir()
		df := "FROM " + base + "/busybox:1.35\nRUN echo about to fail && exit 3\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		s, digestFile := kanikoStep(t, dir, &log, "--dockerfile=Dockerfile", "--context=dir:///workspace/source",
			"--digest-file=/tekton/results/IMAGE_DIGEST", "--destination="+reg.Host+"/direct/fails:1")
		err := k.Execute(context.Background(), s)
		var ee *podrunner.ExitError
		if !errors.As(err, &ee) || ee.Code == 0 {
			t.Fatalf("a failing RUN: %v, want the executor's non-zero exit\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "about to fail") {
			t.Errorf("the RUN's output is not in the step's log:\n%s", log.String())
		}
		if _, err := os.Stat(digestFile); err == nil {
			t.Error("a failed build wrote a digest")
		}
	})

	t.Run("not the executor", func(t *testing.T) {
		s, _ := kanikoStep(t, t.TempDir(), io.Discard, "--help")
		s.Command = []string{"/busybox/sh", "-c", "echo hi"}
		err := k.Execute(context.Background(), s)
		var ee *podrunner.ExitError
		if err == nil || errors.As(err, &ee) {
			t.Fatalf("running %v in the Kaniko image: %v, want a runner error (the image has no shell)", s.Command, err)
		}
	})
}
