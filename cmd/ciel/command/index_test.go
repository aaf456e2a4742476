package command

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
)

func TestIndexCreate(t *testing.T) {
	host := registrytest.Memory(t)
	repo := host + "/team/app"
	amd := push(t, repo+":abc-amd64", platformImage(t, "linux/amd64", "1"))
	arm := push(t, repo+":abc-arm64", platformImage(t, "linux/arm64", "1"))
	dir := t.TempDir()
	digestFile, urlFile, refFile := filepath.Join(dir, "IMAGE_DIGEST"), filepath.Join(dir, "IMAGE_URL"), filepath.Join(dir, "REF")

	r := mustRun(t, nil, "index", "create", "--tag", repo+":abc", "--tag", repo+":main",
		"--digest-file", digestFile, "--url-file", urlFile, "--ref-file", refFile,
		arm+"=linux/arm64/v8", amd+"=linux/amd64")
	digest := clienttest.Head(t, repo+":abc")
	if want := digest + "\n" + repo + "@" + digest + "\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	if clienttest.Head(t, repo+":main") != digest {
		t.Error("the second tag does not point at the index")
	}
	for file, want := range map[string]string{digestFile: digest, urlFile: repo + ":abc", refFile: repo + "@" + digest} {
		if got := readFile(t, file); got != want {
			t.Errorf("%s = %q, want %q", filepath.Base(file), got, want)
		}
	}
	golden(t, "index-create.stderr", r.stderr, host, "REGISTRY", digest[7:19], "INDEX_DIGEST")

	// A re-run is a no-op printing the same digest.
	again := run(t, nil, "index", "create", "--tag", repo+":abc", "--tag", repo+":main", amd, arm)
	if again.code != 0 || again.stdout != r.stdout {
		t.Fatalf("re-run: exit %d, stdout %q, want %q", again.code, again.stdout, r.stdout)
	}
	if strings.Count(again.stderr, "unchanged") != 2 {
		t.Errorf("re-run summary does not report both tags unchanged:\n%s", again.stderr)
	}
}

func TestIndexCreateTemplateJSON(t *testing.T) {
	repo := registrytest.Memory(t) + "/team/app"
	push(t, repo+":abc-amd64", platformImage(t, "linux/amd64", "1"))
	push(t, repo+":abc-arm64", platformImage(t, "linux/arm64", "1"))
	r := mustRun(t, nil, "index", "create", "-o", "json", "--tag", repo+":abc",
		"--platforms", "linux/amd64,linux/arm64", "--template", repo+":abc-ARCH",
		"--require-platforms", "linux/amd64,linux/arm64")
	var rep createJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Digest != clienttest.Head(t, repo+":abc") || len(rep.References) != 1 || rep.References[0] != repo+"@"+rep.Digest {
		t.Errorf("report header = %+v", rep)
	}
	var platforms, sources []string
	for _, m := range rep.Manifests {
		platforms = append(platforms, m.Platform)
		sources = append(sources, strings.TrimPrefix(m.Source, repo))
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
	want := []tagJSON{{Tag: repo + ":abc", Updated: true}}
	if diff := cmp.Diff(want, rep.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}

	// --require-platforms fails the merge when one is missing.
	r = run(t, nil, "index", "create", "--tag", repo+":abc2",
		"--platforms", "linux/amd64", "--template", repo+":abc-ARCH", "--require-platforms", "linux/amd64,linux/arm64")
	r.exited(t, ExitFailed, "lack linux/arm64")
}

func TestIndexCreateAnnotations(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := push(t, repo+":a", platformImage(t, "linux/amd64", "1"))
	env := map[string]string{
		"CI_PROJECT_URL":    "https://gitlab.example.com/team/app",
		"CI_COMMIT_SHA":     "0123456789abcdef0123456789abcdef01234567",
		"SOURCE_DATE_EPOCH": "1700000000",
	}
	tests := []struct {
		name string
		args []string
		want map[string]string
	}{
		{
			name: "from GitLab CI variables",
			want: map[string]string{
				"org.opencontainers.image.source":   "https://gitlab.example.com/team/app",
				"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
				"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
			},
		},
		{
			name: "flags and --annotation win",
			args: []string{"--revision", "feedface", "--image-version", "v1.2.3", "--annotation", "org.opencontainers.image.source=https://x", "--annotation", "team=core"},
			want: map[string]string{
				"org.opencontainers.image.source":   "https://x",
				"org.opencontainers.image.revision": "feedface",
				"org.opencontainers.image.version":  "v1.2.3",
				"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
				"team":                              "core",
			},
		},
		{name: "standard annotations off", args: []string{"--standard-annotations=false"}, want: nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := repo + ":t" + string(rune('0'+i))
			args := append([]string{"index", "create", "--tag", tag, amd}, tt.args...)
			mustRun(t, env, args...)
			ref, _ := name.ParseReference(tag)
			idx, err := remote.Index(ref)
			if err != nil {
				t.Fatal(err)
			}
			im, _ := idx.IndexManifest()
			if diff := cmp.Diff(tt.want, im.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
		})
	}
	// The Docker format has no annotations: values from the environment are
	// left out, explicit ones are a usage error.
	dock := push(t, repo+":d", dockerImage(t))
	if r := run(t, env, "index", "create", "--format", "docker", "--tag", repo+":docker", dock); r.code != 0 {
		t.Errorf("docker format with CI variables: exit %d: %s", r.code, r.stderr)
	}
	if r := run(t, env, "index", "create", "--format", "docker", "--revision", "x", "--tag", repo+":docker", dock); r.code != ExitUsage {
		t.Errorf("docker format with --revision: exit %d, want 2", r.code)
	}
}

func TestIndexCreateDryRun(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := push(t, repo+":a", platformImage(t, "linux/amd64", "1"))
	r := mustRun(t, nil, "index", "create", "--dry-run", "--tag", repo+":v1", amd)
	var im map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &im); err != nil || im["mediaType"] != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("stdout is not the index JSON (%v): %s", err, r.stdout)
	}
	if d := clienttest.Head(t, repo+":v1"); d != "" {
		t.Errorf("dry run pushed the tag (%s)", d)
	}
}

func TestIndexCreatePlatformMismatch(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := push(t, repo+":a", platformImage(t, "linux/amd64", "1"))
	wrong := push(t, repo+":b", platformImage(t, "linux/amd64", "2"))
	r := run(t, nil, "index", "create", "--tag", repo+":v1", amd+"=linux/amd64", wrong+"=linux/arm64")
	if r.code != ExitFailed {
		t.Fatalf("exit %d, want 1: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "declared linux/arm64") || !strings.Contains(r.stderr, "says linux/amd64") {
		t.Errorf("stderr does not name both platforms: %s", r.stderr)
	}
	if r.stdout != "" || clienttest.Head(t, repo+":v1") != "" {
		t.Errorf("something was pushed or printed: %q", r.stdout)
	}
}

func TestIndexInspect(t *testing.T) {
	host := registrytest.Memory(t)
	repo := host + "/app"
	digest := pushIndex(t, repo+":multi", platformImage(t, "linux/amd64", "1"), platformImage(t, "linux/arm64/v8", "1"))
	r := mustRun(t, nil, "index", "inspect", repo+":multi")
	golden(t, "index-inspect.txt", r.stdout, host, "REGISTRY")

	r = mustRun(t, nil, "index", "inspect", "-o", "json", repo+":multi")
	var s struct {
		Digest    string `json:"digest"`
		Manifests []struct {
			Platform string `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Digest != digest || len(s.Manifests) != 2 || s.Manifests[1].Platform != "linux/arm64/v8" {
		t.Errorf("json = %+v", s)
	}

	single := push(t, repo+":single", platformImage(t, "linux/amd64", "1"))
	run(t, nil, "index", "inspect", single).exited(t, ExitFailed, "not an image index")
}

// TestUsageErrors: every refused command line of `ciel index` and `ciel
// release` exits 2 and names what is wrong.
func TestUsageErrors(t *testing.T) {
	const img = "reg.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const from = "reg.example.com/app:abc"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{}, "needs a subcommand"},
		{"unknown subcommand", []string{"index", "merge"}, `unknown command "merge"`},
		{"unknown flag", []string{"index", "create", "--nope"}, "unknown flag"},
		{"no tag", []string{"index", "create", img}, "--tag"},
		{"tag without tag", []string{"index", "create", "--tag", "reg.example.com/app", img}, "no tag given"},
		{"no sources", []string{"index", "create", "--tag", "reg.example.com/app:v1"}, "no source images"},
		{"bad declared platform", []string{"index", "create", "--tag", "reg.example.com/app:v1", img + "=linux"}, "os/arch"},
		{"platforms without template", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--platforms", "linux/amd64"}, "go together"},
		{"template without placeholder", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--platforms", "linux/amd64", "--template", "reg.example.com/app:x"}, "none of OS, ARCH"},
		{"bad required platform", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--require-platforms", "amd64", img}, "--require-platforms"},
		{"bad format", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--format", "zip", img}, "--format"},
		{"bad output", []string{"index", "create", "--tag", "reg.example.com/app:v1", "-o", "yaml", img}, "--output"},
		{"bad annotation", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--annotation", "novalue", img}, "KEY=VALUE"},
		{"bad created", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--created", "yesterday", img}, "RFC 3339"},
		{"docker with annotation", []string{"index", "create", "--tag", "reg.example.com/app:v1", "--format", "docker", "--annotation", "a=b", img}, "no annotations"},
		{"negative retries", []string{"index", "create", "--retries", "-1", "--tag", "reg.example.com/app:v1", img}, "--retries"},
		{"missing CA file", []string{"index", "create", "--ca-file", "/nonexistent.pem", "--tag", "reg.example.com/app:v1", img}, "CA file"},
		{"inspect without ref", []string{"index", "inspect"}, "exactly one reference"},
		{"inspect bad ref", []string{"index", "inspect", "Not A Ref"}, "parsing image reference"},
		{"release without subcommand", []string{"release"}, "needs a subcommand"},
		{"two components", []string{"release", "promote", "--from", from, "--version", "v1.2"}, "exactly three"},
		{"unprefixed two components", []string{"release", "promote", "--from", from, "--version", "1.4"}, "exactly three"},
		{"leading zero", []string{"release", "promote", "--from", from, "--version", "v1.02.0"}, "leading zero"},
		{"no version", []string{"release", "promote", "--from", from}, "--version is required"},
		{"no from", []string{"release", "promote", "--version", "v1.0.0"}, "--from"},
		{"bad from", []string{"release", "promote", "--from", "Bad Ref", "--version", "v1.0.0"}, "parsing image reference"},
		{"bad repo", []string{"release", "promote", "--from", from, "--repo", "reg.example.com/app:tag", "--version", "v1.0.0"}, "parsing repository"},
		{"bad latest", []string{"release", "promote", "--from", from, "--version", "v1.0.0", "--latest", "sometimes"}, "latest mode"},
		{"bad prefix", []string{"release", "promote", "--from", from, "--version", "v1.0.0", "--tag-prefix", "V"}, "tag prefix"},
		{"bad build metadata", []string{"release", "promote", "--from", from, "--version", "v1.0.0", "--build-metadata", "plus"}, "build metadata"},
		{"bad platforms", []string{"release", "promote", "--from", from, "--version", "v1.0.0", "--require-platforms", "linux"}, "--require-platforms"},
		{"positional args", []string{"release", "promote", "v1.0.0"}, "takes no arguments"},
		{"bad output", []string{"release", "promote", "--from", from, "--version", "v1.0.0", "-o", "yaml"}, "--output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, nil, tt.args...).exited(t, ExitUsage, tt.want)
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{usagef("x"), 2},
		{asUsage(errFake), 2},
		{errFake, 1},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if asUsage(nil) != nil {
		t.Error("asUsage(nil) != nil")
	}
}
