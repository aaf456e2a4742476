// Package kaniko computes the Kaniko executor flags of one per-platform
// build that Tekton cannot compute itself, and reads what Kaniko writes back.
//
// A Tekton Task cannot split "linux/arm/v7" into its parts, prefix every
// element of an array parameter with --build-arg, or derive a per-platform
// repository name; with no shell in the Kaniko image, a small step computes
// these flags (Build.Args) and hands them to the executor step as an array
// step result. The flags are:
//
//   - --destination=IMAGE:TAG (TAG-linux-arm-v7 with a platform suffix, so
//     that the builds of one multi-arch run do not overwrite each other);
//   - --custom-platform and the TARGETPLATFORM, TARGETOS, TARGETARCH and
//     TARGETVARIANT build arguments BuildKit predefines, then the user's
//     build arguments;
//   - --cache-repo=BASE/cache-linux-arm-v7: one cache repository per
//     platform, because Kaniko's layer cache key does not include the
//     platform, and arches sharing one cache repository get each other's
//     layers;
//   - --registry-certificate for the destination and cache registries when a
//     CA file is given;
//   - the org.opencontainers.image.revision and .source labels.
package kaniko

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/ciel-ci/ciel/images/platform"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Label keys set on the image.
const (
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
)

// ErrInvalid marks a build parameter Kaniko would reject or misuse.
var ErrInvalid = errors.New("invalid build parameter")

var buildArgKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Build is one Kaniko build for one platform.
type Build struct {
	// Image is the repository pushed to, REGISTRY/REPO without tag or
	// digest.
	Image string
	// Tag is the tag pushed; with PlatformTag the platform slug is appended
	// ("-linux-arm64").
	Tag         string
	PlatformTag bool
	// Platform is the canonical target platform (platform.Parse).
	Platform v1.Platform
	// CacheRepo is the base of the per-platform cache repository; empty
	// means Image. The cache repository is CacheRepo/cache-<platform slug>.
	CacheRepo string
	// BuildArgs are the user's KEY=VALUE build arguments.
	BuildArgs []string
	// CAFile, when set, is passed with --registry-certificate for the
	// destination and cache registries.
	CAFile string
	// Revision and Source, when set, become the
	// org.opencontainers.image.revision and .source labels; user
	// credentials in Source are removed.
	Revision, Source string
}

// Destination returns the reference the image is pushed to.
func (b Build) Destination() (name.Tag, error) {
	repo, err := repository("image", b.Image)
	if err != nil {
		return name.Tag{}, err
	}
	if b.Tag == "" {
		return name.Tag{}, fmt.Errorf("%w: tag is empty", ErrInvalid)
	}
	tag := b.Tag
	if b.PlatformTag {
		tag += "-" + platform.Slug(b.Platform)
	}
	t, err := name.NewTag(repo.Name() + ":" + tag)
	if err != nil {
		return name.Tag{}, fmt.Errorf("%w: tag %q: %w", ErrInvalid, tag, err)
	}
	return t, nil
}

// CacheRepository returns the per-platform cache repository.
func (b Build) CacheRepository() (name.Repository, error) {
	base, kind := b.CacheRepo, "cache repository"
	if base == "" {
		base, kind = b.Image, "image"
	}
	if _, err := repository(kind, base); err != nil {
		return name.Repository{}, err
	}
	r, err := name.NewRepository(base + "/cache-" + platform.Slug(b.Platform))
	if err != nil {
		return name.Repository{}, fmt.Errorf("%w: cache repository for %s: %w", ErrInvalid, b.Platform.String(), err)
	}
	return r, nil
}

// Args returns the executor flags of the build, in a fixed order.
func (b Build) Args() ([]string, error) {
	if b.Platform.OS == "" || b.Platform.Architecture == "" {
		return nil, fmt.Errorf("%w: platform needs an os and an architecture", ErrInvalid)
	}
	dest, err := b.Destination()
	if err != nil {
		return nil, err
	}
	cache, err := b.CacheRepository()
	if err != nil {
		return nil, err
	}
	user, err := checkBuildArgs(b.BuildArgs)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--destination=" + dest.String(),
		"--custom-platform=" + b.Platform.String(),
	}
	for _, kv := range platform.BuildArgs(b.Platform) {
		args = append(args, "--build-arg="+kv)
	}
	for _, kv := range user {
		args = append(args, "--build-arg="+kv)
	}
	args = append(args, "--cache-repo="+cache.String())
	if b.CAFile != "" {
		for _, host := range uniq(dest.RegistryStr(), cache.RegistryStr()) {
			args = append(args, "--registry-certificate="+host+"="+b.CAFile)
		}
	}
	if b.Revision != "" {
		args = append(args, "--label="+LabelRevision+"="+b.Revision)
	}
	if src := redactURL(b.Source); src != "" {
		args = append(args, "--label="+LabelSource+"="+src)
	}
	return args, nil
}

// ReadDigestFile reads the digest Kaniko wrote with --digest-file
// ("sha256:<64 hex>", possibly followed by a newline) and checks it.
func ReadDigestFile(path string) (v1.Hash, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading the digest Kaniko wrote: %w", err)
	}
	s := strings.TrimSpace(string(b))
	h, err := v1.NewHash(s)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("the digest Kaniko wrote to %s, %q: %w", path, s, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, fmt.Errorf("the digest Kaniko wrote to %s uses %s, want sha256", path, h.Algorithm)
	}
	return h, nil
}

// PinnedReference returns IMAGE@DIGEST, the reference Kaniko's
// --image-name-with-digest-file would write, without its trailing newline.
func PinnedReference(image string, digest v1.Hash) (name.Digest, error) {
	repo, err := repository("image", image)
	if err != nil {
		return name.Digest{}, err
	}
	return repo.Digest(digest.String()), nil
}

// repository parses REGISTRY/REPO, refusing a tag or digest.
func repository(what, s string) (name.Repository, error) {
	if strings.TrimSpace(s) == "" {
		return name.Repository{}, fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if strings.Contains(s, "@") {
		return name.Repository{}, fmt.Errorf("%w: %s %q has a digest; want REGISTRY/REPO", ErrInvalid, what, s)
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		return name.Repository{}, fmt.Errorf("%w: %s %q has a tag; want REGISTRY/REPO", ErrInvalid, what, s)
	}
	r, err := name.NewRepository(s)
	if err != nil {
		return name.Repository{}, fmt.Errorf("%w: %s %q: %w", ErrInvalid, what, s, err)
	}
	return r, nil
}

// checkBuildArgs validates the user's KEY=VALUE build arguments.
func checkBuildArgs(args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, kv := range args {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: build argument %q: want KEY=VALUE", ErrInvalid, kv)
		case !buildArgKey.MatchString(k):
			return nil, fmt.Errorf("%w: build argument %q: %q is not an ARG name", ErrInvalid, kv, k)
		case slices.Contains(platform.BuildArgNames, k):
			return nil, fmt.Errorf("%w: build argument %s is set from the platform; choose the platform instead", ErrInvalid, k)
		case seen[k]:
			return nil, fmt.Errorf("%w: build argument %s given twice", ErrInvalid, k)
		}
		seen[k] = true
		out = append(out, kv)
	}
	return out, nil
}

// redactURL drops user information (tokens) from a URL; text that is not
// a URL with a scheme (e.g. scp-like git@host:group/repo.git) is kept.
func redactURL(s string) string {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return s
	}
	u.User = nil
	return u.String()
}

func uniq(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
