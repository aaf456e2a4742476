package podrunner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// kanikoStep returns a step whose /workspace/source and /tekton/results are
// host directories, with a Dockerfile in the source.
func kanikoStep(t *testing.T, arch string, args ...string) (*Step, string, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	src, results := filepath.Join(dir, "src"), filepath.Join(dir, "results")
	for _, d := range []string{src, results} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	return &Step{
		Command:    append([]string{"/kaniko/executor"}, args...),
		WorkingDir: "/",
		Mounts: Mounts{
			{ContainerPath: "/tekton/results", HostPath: results},
			{ContainerPath: "/workspace/source", HostPath: src},
		},
		OS: "linux", Arch: arch, Stdout: &out, Stderr: &out, ScratchDir: t.TempDir(),
	}, results, &out
}

func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestSyntheticKanikoPushesForThePlatform(t *testing.T) {
	host := testRegistry(t)
	tests := []struct {
		name, arch, custom, wantPlatform string
	}{
		{"node platform amd64", "amd64", "", "linux/amd64"},
		{"node platform arm64", "arm64", "", "linux/arm64"},
		{"custom platform", "amd64", "linux/arm/v7", "linux/arm/v7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := host + "/app:" + strings.ReplaceAll(tc.wantPlatform, "/", "-")
			args := []string{"--dockerfile=Dockerfile", "--context=dir:///workspace/source", "--destination", dest,
				"--digest-file=/tekton/results/IMAGE_DIGEST", "--image-name-with-digest-file=/tekton/results/IMAGE_REF",
				"--cache=true", "--cache-repo=" + host + "/cache", "-v", "debug", "--build-arg", "A=1", "--label", "team=ci"}
			if tc.custom != "" {
				args = append(args, "--custom-platform="+tc.custom)
			}
			s, results, out := kanikoStep(t, tc.arch, args...)
			if err := (&SyntheticKaniko{}).Execute(context.Background(), s); err != nil {
				t.Fatalf("%v; output:\n%s", err, out)
			}
			digest, err := os.ReadFile(filepath.Join(results, "IMAGE_DIGEST"))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(dest)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(ref)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			if d.String() != string(digest) {
				t.Errorf("digest file %q, registry %s", digest, d)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := cf.Platform().String(); got != tc.wantPlatform {
				t.Errorf("config platform %s, want %s", got, tc.wantPlatform)
			}
			if cf.Config.Labels["team"] != "ci" {
				t.Errorf("labels %v", cf.Config.Labels)
			}
			refFile, _ := os.ReadFile(filepath.Join(results, "IMAGE_REF"))
			if want := ref.Context().Name() + "@" + string(digest) + "\n"; string(refFile) != want {
				t.Errorf("image-name-with-digest-file %q, want %q", refFile, want)
			}
		})
	}
}

func TestSyntheticKanikoReproducible(t *testing.T) {
	host := testRegistry(t)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k := &SyntheticKaniko{Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	digest := func(arch string, extra ...string) string {
		t.Helper()
		s, results, out := kanikoStep(t, arch, append([]string{"--context=/workspace/source", "--destination=" + host + "/r:x",
			"--digest-file=/tekton/results/D"}, extra...)...)
		if err := k.Execute(context.Background(), s); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(results, "D"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a1, a2 := digest("amd64", "--reproducible"), digest("amd64", "--reproducible")
	if a1 != a2 {
		t.Errorf("--reproducible gave %s then %s for the same inputs", a1, a2)
	}
	if b := digest("arm64", "--reproducible"); b == a1 {
		t.Error("--reproducible gave the same digest for two platforms")
	}
	if b := digest("amd64", "--reproducible", "--build-arg=V=2"); b == a1 {
		t.Error("--reproducible ignored a build arg")
	}
	if n1, n2 := digest("amd64"), digest("amd64"); n1 == n2 {
		t.Error("two builds without --reproducible gave the same digest")
	}
}

func TestSyntheticKanikoFailures(t *testing.T) {
	host := testRegistry(t)
	tests := []struct {
		name     string
		args     []string
		wantExit int    // 0: want a non-exit error (unfaithful)
		wantOut  string // in the step output
	}{
		{"unknown flag", []string{"--no-such-flag", "--destination=" + host + "/a:b"}, 1, "unknown flag"},
		{"missing Dockerfile", []string{"--context=/workspace/source", "--dockerfile=nope/Dockerfile", "--destination=" + host + "/a:b"}, 1, "no Dockerfile"},
		{"context not mounted", []string{"--context=/nowhere", "--destination=" + host + "/a:b"}, 0, ""},
		{"no destination", []string{"--context=/workspace/source"}, 1, "--destination"},
		{"bad platform", []string{"--context=/workspace/source", "--destination=" + host + "/a:b", "--custom-platform=//"}, 1, "custom-platform"},
		{"tarball output", []string{"--context=/workspace/source", "--destination=" + host + "/a:b", "--tar-path=/tmp/x.tar"}, 0, ""},
		{"remote context", []string{"--context=git://example.com/repo", "--destination=" + host + "/a:b"}, 0, ""},
		{"unreachable registry", []string{"--context=/workspace/source", "--destination=127.0.0.1:1/a:b", "--push-retry=0"}, 1, "failed to push"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, out := kanikoStep(t, "amd64", tc.args...)
			err := (&SyntheticKaniko{}).Execute(context.Background(), s)
			var ee *ExitError
			switch {
			case tc.wantExit == 0:
				if err == nil || errors.As(err, &ee) {
					t.Fatalf("err = %v, want an error that is not an exit code", err)
				}
			case !errors.As(err, &ee) || ee.Code != tc.wantExit:
				t.Fatalf("err = %v, want exit %d", err, tc.wantExit)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q does not mention %q", out.String(), tc.wantOut)
			}
		})
	}
}

func TestParseKanikoFlagsForms(t *testing.T) {
	f, err := parseKanikoFlags([]string{"-d", "r/a:1", "--destination=r/a:2", "-f", "x/Dockerfile", "-c", "dir:///w", "--build-arg", "A=1", "--build-arg=B=2", "--reproducible"})
	if err != nil {
		t.Fatal(err)
	}
	got := []any{f.destinations, f.dockerfile, f.context, f.buildArgs, f.reproducible}
	want := []any{[]string{"r/a:1", "r/a:2"}, "x/Dockerfile", "dir:///w", []string{"A=1", "B=2"}, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
