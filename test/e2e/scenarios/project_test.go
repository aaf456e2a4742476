package scenarios

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/test/e2e/harness"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

// projectPath is the test project's path on the suite's GitLab, as the
// webhook fixtures name it (path_with_namespace).
const projectPath = "acme/payments-api"

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

// project is the test project's repository on the suite's GitLab.
type project struct {
	dir string
	// cloneURL is https://GITLAB/acme/payments-api.git.
	cloneURL string
}

// newProject (re)creates the test project's repository on the suite's
// GitLab with one commit on main, its bases under baseRegistry, and
// returns it with that commit.
func newProject(t *testing.T, env *harness.Env, baseRegistry string) (*project, string) {
	t.Helper()
	dir := filepath.Join(env.GitLab.ReposDir, projectPath+".git")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p := &project{dir: dir, cloneURL: env.GitLab.BaseURL + "/" + projectPath + ".git"}
	helloProject(t, env, dir, baseRegistry)
	p.git(t, "init", "-q", "-b", "main")
	p.git(t, "add", ".")
	p.git(t, "commit", "-q", "-m", "first")
	return p, p.git(t, "rev-parse", "HEAD")
}

// commit adds a commit changing file on branch (created from HEAD when
// new) and returns its SHA.
func (p *project) commit(t *testing.T, branch, file, content string) string {
	t.Helper()
	if p.git(t, "branch", "--list", branch) == "" {
		p.git(t, "checkout", "-q", "-b", branch)
	} else {
		p.git(t, "checkout", "-q", branch)
	}
	if err := os.WriteFile(filepath.Join(p.dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	p.git(t, "add", file)
	p.git(t, "commit", "-q", "-m", "change "+file)
	return p.git(t, "rev-parse", "HEAD")
}

func (p *project) git(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ciel", "GIT_AUTHOR_EMAIL=ciel@example.com",
		"GIT_COMMITTER_NAME=ciel", "GIT_COMMITTER_EMAIL=ciel@example.com", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// imageFiles returns the regular files of img's flattened filesystem whose
// paths (without the leading slash) are in want.
func imageFiles(t *testing.T, img v1.Image, want ...string) map[string][]byte {
	t.Helper()
	got, err := imagefs.ReadFiles(img, want...)
	if err != nil {
		t.Fatal(err)
	}
	return got
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

// unameMachine is what `uname -m` prints on each architecture.
var unameMachine = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// checkHelloImage checks an image of the test project built for
// linux/arch: its config, its program's and its base's ELF machine, and
// what its RUN recorded — the machine it ran on (uname -m) and the
// program's own line, run there — and returns the recorded machine.
func checkHelloImage(t *testing.T, img v1.Image, arch string) string {
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
	files := imageFiles(t, img, "usr/local/bin/hello", "etc/hello-build", "etc/build-arch", "bin/busybox")
	if got := elfMachine(t, files["usr/local/bin/hello"]); got != arch {
		t.Errorf("linux/%s image: /usr/local/bin/hello is built for %s", arch, got)
	}
	if got := elfMachine(t, files["bin/busybox"]); got != arch {
		t.Errorf("linux/%s image: the base's /bin/busybox is %s", arch, got)
	}
	if got, want := string(files["etc/hello-build"]), "hello from linux/"+arch+"\n"; got != want {
		t.Errorf("linux/%s image: /etc/hello-build, which its RUN writes, holds %q, want %q", arch, got, want)
	}
	machine := strings.TrimSpace(string(files["etc/build-arch"]))
	if machine != unameMachine[arch] {
		t.Errorf("linux/%s image: its RUN ran on %q (uname -m), want %s", arch, machine, unameMachine[arch])
	}
	return machine
}
