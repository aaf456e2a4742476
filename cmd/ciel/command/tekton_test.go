package command

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/internal/registryclient"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// runTekton runs `ciel tekton ARGS...` as the binary does.
func runTekton(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return run(t, env, append([]string{"tekton"}, args...)...)
}

func TestTektonPlanPlatforms(t *testing.T) {
	for _, tc := range []struct {
		name                string
		args                []string
		code                int
		arches, platforms   string
		stdout, stderrMatch string
	}{
		{
			name: "default", args: []string{"linux/amd64", "linux/arm64"},
			arches: `["amd64","arm64"]`, platforms: "linux/amd64,linux/arm64",
			stdout: "PLATFORM     NODE ARCH (kubernetes.io/arch)\nlinux/amd64  amd64\nlinux/arm64  arm64\n",
		},
		{
			name: "aliases and variants", args: []string{"x86_64,aarch64", "linux/arm/v6", "linux/arm64/v8"},
			arches: `["amd64","arm64","arm"]`, platforms: "linux/amd64,linux/arm64,linux/arm/v6",
			stdout: "PLATFORM      NODE ARCH (kubernetes.io/arch)\nlinux/amd64   amd64\nlinux/arm64   arm64\nlinux/arm/v6  arm\n",
		},
		{name: "windows refused", args: []string{"linux/amd64", "windows/amd64"}, code: ExitFailed, stderrMatch: "Kaniko builds Linux images only"},
		{name: "two arm variants refused", args: []string{"linux/arm/v6", "linux/arm/v7"}, code: ExitFailed, stderrMatch: "kubernetes.io/arch=arm"},
		{name: "none", args: nil, code: ExitFailed, stderrMatch: "no platforms given"},
		{name: "bad flag", args: []string{"--nope"}, code: ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			arches, platforms := filepath.Join(dir, "ARCHES"), filepath.Join(dir, "PLATFORMS")
			r := runTekton(t, nil, append([]string{"plan-platforms", "--arches-file", arches, "--platforms-file", platforms}, tc.args...)...)
			if !r.exited(t, tc.code, tc.stderrMatch) {
				if _, err := os.Stat(arches); err == nil {
					t.Error("a result was written for a refused plan")
				}
				return
			}
			if diff := cmp.Diff(tc.stdout, r.stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if got := readFile(t, arches); got != tc.arches {
				t.Errorf("ARCHES = %s, want %s", got, tc.arches)
			}
			if got := readFile(t, platforms); got != tc.platforms {
				t.Errorf("PLATFORMS = %s, want %s", got, tc.platforms)
			}
		})
	}
}

func TestTektonKanikoArgs(t *testing.T) {
	caDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(caDir, CABundleFile), []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		platform string
		want     []string
		errMatch string
	}{
		{
			name: "bare arch from the matrix takes the planned variant",
			args: []string{"--image", "registry.example.com/app", "--tag", "1a2b3c4d", "--platform", "arm",
				"--platforms", "linux/amd64,linux/arm/v6", "--revision", "abc", "--source", "https://gitlab-ci-token:x@gitlab.example.com/g/app.git",
				"--", "GO_VERSION=1.26"},
			platform: "linux/arm/v6",
			want: []string{
				"--destination=registry.example.com/app:1a2b3c4d-linux-arm-v6",
				"--custom-platform=linux/arm/v6",
				"--build-arg=TARGETPLATFORM=linux/arm/v6",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=arm",
				"--build-arg=TARGETVARIANT=v6",
				"--build-arg=GO_VERSION=1.26",
				"--cache-repo=registry.example.com/app/cache-linux-arm-v6",
				"--label=org.opencontainers.image.revision=abc",
				"--label=org.opencontainers.image.source=https://gitlab.example.com/g/app.git",
			},
		},
		{
			name: "full platform, exact tag, cache base, CA",
			args: []string{"--image", "registry.example.com/app", "--tag", "v1", "--platform", "linux/arm64/v8",
				"--platform-tag=false", "--cache-repo", "registry.example.com/cache", "--ca-dir", caDir},
			platform: "linux/arm64",
			want: []string{
				"--destination=registry.example.com/app:v1",
				"--custom-platform=linux/arm64",
				"--build-arg=TARGETPLATFORM=linux/arm64",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=arm64",
				"--build-arg=TARGETVARIANT=",
				"--cache-repo=registry.example.com/cache/cache-linux-arm64",
				"--registry-certificate=registry.example.com=" + filepath.Join(caDir, CABundleFile),
			},
		},
		{name: "unplanned", args: []string{"--image", "r.example.com/app", "--tag", "t", "--platform", "s390x", "--platforms", "linux/amd64"},
			code: ExitFailed, errMatch: "s390x is not one of linux/amd64"},
		{name: "windows", args: []string{"--image", "r.example.com/app", "--tag", "t", "--platform", "windows/amd64"},
			code: ExitFailed, errMatch: "Linux images only"},
		{name: "bound ca-bundle without ca.crt", args: []string{"--image", "r.example.com/app", "--tag", "t", "--platform", "amd64", "--ca-dir", t.TempDir()},
			code: ExitFailed, errMatch: "has no ca.crt"},
		{name: "build arg overriding the platform", args: []string{"--image", "r.example.com/app", "--tag", "t", "--platform", "amd64", "--", "TARGETARCH=arm64"},
			code: ExitFailed, errMatch: "set from the platform"},
		{name: "too many build args", args: append([]string{"--image", "r.example.com/app", "--tag", "t", "--platform", "amd64", "--"}, manyBuildArgs(60)...),
			code: ExitFailed, errMatch: "termination message"},
		{name: "missing image", args: []string{"--tag", "t", "--platform", "amd64"}, code: ExitUsage, errMatch: "--image is required"},
		{name: "missing platform", args: []string{"--image", "r.example.com/app", "--tag", "t"}, code: ExitUsage, errMatch: "--platform is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pf, af := filepath.Join(dir, "PLATFORM"), filepath.Join(dir, "args")
			r := runTekton(t, nil, append([]string{"kaniko-args", "--platform-file", pf, "--args-file", af}, tc.args...)...)
			if !r.exited(t, tc.code, tc.errMatch) {
				return
			}
			if got := readFile(t, pf); got != tc.platform {
				t.Errorf("PLATFORM = %q, want %q", got, tc.platform)
			}
			var got []string
			if err := json.Unmarshal([]byte(readFile(t, af)), &got); err != nil {
				t.Fatalf("args result is not a JSON array: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if want := "platform " + tc.platform + "\n" + strings.Join(tc.want, "\n") + "\n"; r.stdout != want {
				t.Errorf("stdout = %q, want %q", r.stdout, want)
			}
		})
	}
}

func manyBuildArgs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("ARG_%d=%s", i, strings.Repeat("v", 40)))
	}
	return out
}

func TestTektonKanikoResults(t *testing.T) {
	dir := t.TempDir()
	digest := "sha256:" + strings.Repeat("3f", 32)
	kd := filepath.Join(dir, "IMAGE_DIGEST")
	if err := os.WriteFile(kd, []byte(digest), 0o644); err != nil {
		t.Fatal(err)
	}
	url := filepath.Join(dir, "IMAGE_URL")
	r := runTekton(t, nil, "kaniko-results", "--image", "registry.example.com/g/app", "--kaniko-digest-file", kd, "--url-file", url)
	r.exited(t, 0, "")
	want := "registry.example.com/g/app@" + digest
	if got := readFile(t, url); got != want {
		t.Errorf("IMAGE_URL = %q, want %q", got, want)
	}
	if r.stdout != want+"\n" {
		t.Errorf("stdout = %q", r.stdout)
	}

	if err := os.WriteFile(kd, []byte("oops"), 0o644); err != nil {
		t.Fatal(err)
	}
	runTekton(t, nil, "kaniko-results", "--image", "registry.example.com/g/app", "--kaniko-digest-file", kd).exited(t, ExitFailed, "oops")
	if r := runTekton(t, nil, "kaniko-results", "--image", "registry.example.com/g/app", "--kaniko-digest-file", filepath.Join(dir, "none")); r.code != ExitFailed {
		t.Errorf("a missing digest file: exit %d", r.code)
	}
	if r := runTekton(t, nil, "kaniko-results", "--image", "registry.example.com/g/app"); r.code != ExitUsage {
		t.Errorf("no digest file: exit %d", r.code)
	}
}

func TestTektonTagArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{name: "tag and extras", args: []string{"1a2b3c4d", "main", "", "1a2b3c4d", " feature-x "},
			want: []string{"--tag=registry.example.com/app:1a2b3c4d", "--tag=registry.example.com/app:main", "--tag=registry.example.com/app:feature-x"}},
		{name: "tag only", args: []string{"v1"}, want: []string{"--tag=registry.example.com/app:v1"}},
		{name: "no tag", args: nil, code: ExitUsage},
		{name: "empty first tag", args: []string{"", "main"}, code: ExitUsage},
		{name: "invalid extra tag", args: []string{"v1", "feature/x"}, code: ExitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			af := filepath.Join(t.TempDir(), "tags")
			r := runTekton(t, nil, append([]string{"tag-args", "--image", "registry.example.com/app", "--args-file", af, "--"}, tc.args...)...)
			if !r.exited(t, tc.code, "") {
				return
			}
			var got []string
			if err := json.Unmarshal([]byte(readFile(t, af)), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
		})
	}
}

// attestedIndex is an index of imgs plus an attestation manifest
// (unknown/unknown) describing the first image, as BuildKit writes them.
func attestedIndex(t *testing.T, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, _ := img.ConfigFile()
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}})
	}
	subject, _ := imgs[0].Digest()
	att, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), &v1.ConfigFile{OS: "unknown", Architecture: "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject.String()},
	}})
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

func TestTektonFindIndex(t *testing.T) {
	host := registrytest.Memory(t)
	repo := host + "/team/app"
	amd := platformImage(t, "linux/amd64", "f")
	arm := platformImage(t, "linux/arm64/v8", "f")
	full := pushIndex(t, repo+":full", amd, arm)
	amdOnly := pushIndex(t, repo+":amd", amd)
	variants := pushIndex(t, repo+":variants", platformImage(t, "linux/amd64/v3", "f"), arm, platformImage(t, "linux/arm", "f"))
	push(t, repo+":single", amd)
	idx := attestedIndex(t, amd, arm)
	tag, err := registryclient.New()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := tag.ParseTag(repo + ":attested")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	attested, _ := idx.Digest()

	for _, tc := range []struct {
		name, image, tag, require string
		extra                     []string
		code                      int
		found, digest, out        string
	}{
		{name: "index covering the platforms", image: repo, tag: "full", require: "linux/amd64,linux/arm64",
			found: "true", digest: full, out: "found: " + repo + "@" + full},
		{name: "no requirement", image: repo, tag: "amd", found: "true", digest: amdOnly},
		{name: "attestations ignored", image: repo, tag: "attested", require: "aarch64,x86_64",
			found: "true", digest: attested.String()},
		{name: "platform missing", image: repo, tag: "amd", require: "linux/amd64,linux/arm64",
			found: "false", out: "lacks linux/arm64"},
		// A planned platform is found as planned, its default variant
		// implied: linux/arm64 is linux/arm64/v8, linux/amd64 is not v3.
		{name: "default variants implied", image: repo, tag: "variants", require: "linux/arm64,linux/arm/v7,linux/amd64/v3",
			found: "true", digest: variants},
		{name: "amd64 is not amd64/v3", image: repo, tag: "variants", require: "linux/amd64", found: "false", out: "lacks linux/amd64"},
		{name: "arm/v6 is not arm/v7", image: repo, tag: "variants", require: "linux/arm/v6", found: "false", out: "lacks linux/arm/v6"},
		{name: "missing tag", image: repo, tag: "nope", found: "false", out: "does not exist"},
		{name: "missing repository", image: host + "/other/app", tag: "1a2b3c4d", found: "false", out: "does not exist"},
		{name: "single image", image: repo, tag: "single", found: "false", out: "single image"},
		{name: "bad requirement", image: repo, tag: "full", require: "windows/amd64", code: ExitUsage},
		{name: "bad tag", image: repo, tag: "a/b", code: ExitUsage},
		{name: "registry down", image: "127.0.0.1:1/app", tag: "x", code: ExitFailed},
		{name: "required and missing", image: repo, tag: "nope", extra: []string{"--required"}, code: ExitFailed},
		{name: "required and found", image: repo, tag: "full", extra: []string{"--required"}, found: "true", digest: full},
		{name: "revision absent from the index", image: repo, tag: "full", extra: []string{"--revision", strings.Repeat("ab", 20)}, code: ExitFailed},
		{name: "abbreviated revision", image: repo, tag: "full", extra: []string{"--revision", "abababab"}, code: ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ff, df, uf := filepath.Join(dir, "FOUND"), filepath.Join(dir, "IMAGE_DIGEST"), filepath.Join(dir, "IMAGE_URL")
			args := []string{"find-index", "--image", tc.image, "--tag", tc.tag, "--found-file", ff, "--digest-file", df, "--url-file", uf}
			if tc.require != "" {
				args = append(args, "--require-platforms", tc.require)
			}
			r := runTekton(t, nil, append(args, tc.extra...)...)
			if !r.exited(t, tc.code, "") {
				return
			}
			if got := readFile(t, ff); got != tc.found {
				t.Errorf("FOUND = %q, want %q", got, tc.found)
			}
			if !strings.Contains(r.stdout, tc.out) {
				t.Errorf("stdout %q does not say %q", r.stdout, tc.out)
			}
			if tc.found == "true" {
				if got := readFile(t, df); got != tc.digest {
					t.Errorf("IMAGE_DIGEST = %q, want %q", got, tc.digest)
				}
				if got, want := readFile(t, uf), tc.image+"@"+tc.digest; got != want {
					t.Errorf("IMAGE_URL = %q, want %q", got, want)
				}
			} else if _, err := os.Stat(df); err == nil {
				t.Error("IMAGE_DIGEST written although nothing was found")
			}
		})
	}
}

// TestTektonFindIndexRealRegistryCABundle runs find-index against the real
// registry process behind TLS with a private CA and basic auth, in a child
// process whose environment is what the find-index Task gives its step:
// SSL_CERT_DIR=$(workspaces.ca-bundle.path) (a directory holding ca.crt)
// and DOCKER_CONFIG=$(workspaces.dockerconfig.path). Without the CA the
// same lookup fails rather than reporting "not found".
func TestTektonFindIndexRealRegistryCABundle(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithTLS(), registrytest.WithBasicAuth("ci", "s3cret"))
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	dockerDir, caDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, CABundleFile), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerDir)
	client, err := registryclient.New(registryclient.WithCAFile(reg.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	idx := attestedIndex(t, platformImage(t, "linux/amd64", "real"), platformImage(t, "linux/arm64", "real"))
	ref, err := client.ParseTag(reg.Host + "/group/app:1a2b3c4d")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, client.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()

	child := func(sslCertDir, tag string) (string, string, error) {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestTektonHelperProcess$")
		args, _ := json.Marshal([]string{"find-index", "--image", reg.Host + "/group/app", "--tag", tag,
			"--require-platforms", "linux/amd64,linux/arm64", "--found-file", filepath.Join(dir, "FOUND"), "--url-file", filepath.Join(dir, "IMAGE_URL")})
		cmd.Env = append(os.Environ(), "CIEL_TEKTON_HELPER_ARGS="+string(args), "SSL_CERT_DIR="+sslCertDir, "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		found, _ := os.ReadFile(filepath.Join(dir, "FOUND"))
		url, _ := os.ReadFile(filepath.Join(dir, "IMAGE_URL"))
		return string(found) + " " + string(url), string(out), err
	}
	got, out, err := child(caDir, "1a2b3c4d")
	if err != nil {
		t.Fatalf("with the ca-bundle: %v\n%s", err, out)
	}
	if w := "true " + reg.Host + "/group/app@" + want.String(); got != w {
		t.Errorf("results = %q, want %q\n%s", got, w, out)
	}
	got, out, err = child(caDir, "0000aaaa")
	if err != nil || got != "false " {
		t.Errorf("missing tag on the real registry: results %q, err %v\n%s", got, err, out)
	}
	if _, out, err := child("", "1a2b3c4d"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("without the ca-bundle the lookup did not fail on the certificate: %v\n%s", err, out)
	}
}

// TestTektonHelperProcess is the child of the test above: it runs `ciel
// tekton` with the arguments in $CIEL_TEKTON_HELPER_ARGS and exits with
// its exit code.
func TestTektonHelperProcess(t *testing.T) {
	raw := os.Getenv("CIEL_TEKTON_HELPER_ARGS")
	if raw == "" {
		t.Skip("helper process for TestTektonFindIndexRealRegistryCABundle")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	r := runTekton(t, nil, args...)
	fmt.Print(r.stdout)
	fmt.Fprint(os.Stderr, r.stderr)
	os.Exit(r.code)
}
