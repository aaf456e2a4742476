package kaniko

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/images/platform"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func mustPlatform(t *testing.T, s string) v1.Platform {
	t.Helper()
	p, err := platform.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Build
		want []string
	}{
		{
			name: "per-platform tag, cache under the image",
			b: Build{Image: "registry.example.com/group/app", Tag: "1a2b3c4d", PlatformTag: true,
				Platform: mustPlatform(t, "linux/arm64")},
			want: []string{
				"--destination=registry.example.com/group/app:1a2b3c4d-linux-arm64",
				"--custom-platform=linux/arm64",
				"--build-arg=TARGETPLATFORM=linux/arm64",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=arm64",
				"--build-arg=TARGETVARIANT=",
				"--cache-repo=registry.example.com/group/app/cache-linux-arm64",
			},
		},
		{
			name: "variant, user build args, cache base, CA, labels",
			b: Build{Image: "registry.example.com:5000/app", Tag: "main", PlatformTag: true,
				Platform: mustPlatform(t, "linux/arm/v6"), CacheRepo: "cache.example.com/ci",
				BuildArgs: []string{"GO_VERSION=1.26", "EMPTY=", "WITH_EQUALS=a=b"},
				CAFile:    "/workspace/ca-bundle/ca.crt", Revision: "0123456789abcdef0123456789abcdef01234567",
				Source: "https://oauth2:glpat-secret@gitlab.example.com/group/app.git"},
			want: []string{
				"--destination=registry.example.com:5000/app:main-linux-arm-v6",
				"--custom-platform=linux/arm/v6",
				"--build-arg=TARGETPLATFORM=linux/arm/v6",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=arm",
				"--build-arg=TARGETVARIANT=v6",
				"--build-arg=GO_VERSION=1.26",
				"--build-arg=EMPTY=",
				"--build-arg=WITH_EQUALS=a=b",
				"--cache-repo=cache.example.com/ci/cache-linux-arm-v6",
				"--registry-certificate=registry.example.com:5000=/workspace/ca-bundle/ca.crt",
				"--registry-certificate=cache.example.com=/workspace/ca-bundle/ca.crt",
				"--label=org.opencontainers.image.revision=0123456789abcdef0123456789abcdef01234567",
				"--label=org.opencontainers.image.source=https://gitlab.example.com/group/app.git",
			},
		},
		{
			name: "exact tag, same registry once, scp-like source kept",
			b: Build{Image: "127.0.0.1:5000/app", Tag: "v1", Platform: mustPlatform(t, "linux/amd64"),
				CAFile: "/ca.crt", Source: "git@gitlab.example.com:group/app.git"},
			want: []string{
				"--destination=127.0.0.1:5000/app:v1",
				"--custom-platform=linux/amd64",
				"--build-arg=TARGETPLATFORM=linux/amd64",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=amd64",
				"--build-arg=TARGETVARIANT=",
				"--cache-repo=127.0.0.1:5000/app/cache-linux-amd64",
				"--registry-certificate=127.0.0.1:5000=/ca.crt",
				"--label=org.opencontainers.image.source=git@gitlab.example.com:group/app.git",
			},
		},
		{
			name: "docker hub short name",
			b:    Build{Image: "example/app", Tag: "x", Platform: mustPlatform(t, "linux/s390x")},
			want: []string{
				"--destination=index.docker.io/example/app:x",
				"--custom-platform=linux/s390x",
				"--build-arg=TARGETPLATFORM=linux/s390x",
				"--build-arg=TARGETOS=linux",
				"--build-arg=TARGETARCH=s390x",
				"--build-arg=TARGETVARIANT=",
				"--cache-repo=index.docker.io/example/app/cache-linux-s390x",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.b.Args()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgsErrors(t *testing.T) {
	amd := mustPlatform(t, "linux/amd64")
	ok := Build{Image: "registry.example.com/app", Tag: "t", Platform: amd}
	for _, tc := range []struct {
		name   string
		modify func(*Build)
		msg    string
	}{
		{"no image", func(b *Build) { b.Image = "" }, "image is empty"},
		{"image with tag", func(b *Build) { b.Image = "registry.example.com/app:v1" }, "has a tag"},
		{"image with digest", func(b *Build) { b.Image = "registry.example.com/app@sha256:" + strings.Repeat("a", 64) }, "has a digest"},
		{"image with bad chars", func(b *Build) { b.Image = "registry.example.com/App" }, "image"},
		{"no tag", func(b *Build) { b.Tag = "" }, "tag is empty"},
		{"bad tag", func(b *Build) { b.Tag = "a/b" }, "tag \"a/b\""},
		{"tag too long with suffix", func(b *Build) { b.Tag = strings.Repeat("t", 120); b.PlatformTag = true }, "tag"},
		{"cache repo with tag", func(b *Build) { b.CacheRepo = "registry.example.com/cache:x" }, "cache repository"},
		{"no platform", func(b *Build) { b.Platform = v1.Platform{} }, "platform"},
		{"build arg without value", func(b *Build) { b.BuildArgs = []string{"FOO"} }, "want KEY=VALUE"},
		{"build arg bad key", func(b *Build) { b.BuildArgs = []string{"1FOO=x"} }, "not an ARG name"},
		{"build arg option-like", func(b *Build) { b.BuildArgs = []string{"--insecure=true"} }, "not an ARG name"},
		{"build arg overrides platform", func(b *Build) { b.BuildArgs = []string{"TARGETARCH=arm64"} }, "set from the platform"},
		{"build arg twice", func(b *Build) { b.BuildArgs = []string{"A=1", "A=2"} }, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ok
			tc.modify(&b)
			_, err := b.Args()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Args() error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestReadDigestFile(t *testing.T) {
	dir := t.TempDir()
	good := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, content, err string
	}{
		{name: "plain", content: good},
		{name: "trailing newline", content: good + "\n"},
		{name: "empty", content: "", err: "digest"},
		{name: "garbage", content: "not a digest", err: "digest"},
		{name: "short", content: "sha256:abcd", err: "digest"},
		{name: "sha512", content: "sha512:" + strings.Repeat("ab", 64), err: "want sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			h, err := ReadDigestFile(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReadDigestFile = %v, %v; want error containing %q", h, err, tc.err)
				}
				return
			}
			if err != nil || h.String() != good {
				t.Fatalf("ReadDigestFile = %v, %v; want %s", h, err, good)
			}
		})
	}
	if _, err := ReadDigestFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing digest file is not an error")
	}
}

func TestPinnedReference(t *testing.T) {
	h, err := v1.NewHash("sha256:" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	got, err := PinnedReference("registry.example.com:5000/group/app", h)
	if err != nil {
		t.Fatal(err)
	}
	if want := "registry.example.com:5000/group/app@" + h.String(); got.String() != want {
		t.Errorf("PinnedReference = %s, want %s", got, want)
	}
	if _, err := PinnedReference("registry.example.com/app:tag", h); !errors.Is(err, ErrInvalid) {
		t.Errorf("a tagged image is accepted: %v", err)
	}
}
