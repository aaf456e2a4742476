package command

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// result is what a command run printed and returned.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// run executes the root command as cmd/ciel/main.go does, with env as the
// environment.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	cmd := newRootCmd(func(k string) string { return env[k] })
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&errb, "ciel:", err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: ExitCode(err), err: err}
}

// mustRun is run that fails the test unless the command succeeded.
func mustRun(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("ciel %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// exited checks that r ended with code and, for a failure, that stderr
// says want ("" checks nothing); it reports whether r succeeded, so that the
// caller goes on to check what it wrote.
func (r result) exited(t *testing.T, code int, want string) bool {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d (stderr %s)", r.code, code, r.stderr)
	}
	if code != 0 && !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not say %q", r.stderr, want)
	}
	return code == 0
}

// platformImage is a small deterministic image for os/arch[/variant]; seed
// makes images of the same platform differ.
func platformImage(t *testing.T, platform, seed string) v1.Image {
	t.Helper()
	parts := strings.Split(platform, "/")
	cf := &v1.ConfigFile{OS: parts[0], Architecture: parts[1], RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Labels: map[string]string{"seed": seed}}}
	if len(parts) > 2 {
		cf.Variant = parts[2]
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// push writes img to ref (a tag) and returns REPO@DIGEST.
func push(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	return registrytest.Push(t, ref, img).String()
}

// pushIndex writes an index of the given images to tag and returns its digest.
func pushIndex(t *testing.T, tag string, imgs ...v1.Image) string {
	t.Helper()
	return registrytest.Push(t, tag, registrytest.IndexOf(t, imgs...)).DigestStr()
}

// golden compares got with testdata/file after replacing each key of
// replace by its value, rewriting the file with -update.
func golden(t *testing.T, file, got string, replace ...string) {
	t.Helper()
	got = strings.NewReplacer(replace...).Replace(got)
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerImage is a small image with Docker media types.
func dockerImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var errFake = errors.New("fake failure")
