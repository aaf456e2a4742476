// Package ociindex merges per-architecture images into one multi-platform
// image index (OCI image index or Docker manifest list), verified, and
// inspects indexes. It is the library behind `ciel index`; it needs no CLI.
//
// Kaniko builds one image per architecture (it cannot cross-build), so a
// multi-arch tag has to be assembled afterwards. Build reads every source
// manifest and image config and writes into the index the platform the
// config states (os, architecture, variant, os.version, os.features): a
// platform declared by the caller is checked against it, never trusted.
// Sources that are themselves indexes are flattened into their platform
// manifests; attestation manifests (platform unknown/unknown, annotated with
// vnd.docker.reference.type) are kept while the manifest they describe is.
//
// The result is deterministic: image manifests are ordered by platform (os,
// architecture, variant, os.version, then digest), followed by attestation
// manifests in the order of the manifests they describe; the same inputs
// give the same index digest.
//
// Push writes nothing until every child manifest is known to exist in each
// target repository: children read from the same repository were fetched
// there, children from another repository of the same registry are linked
// by cross-repository blob mount and a manifest PUT by digest (no layer is
// downloaded or uploaded), and only then is the index PUT under each tag.
// A tag that already points at the index is left alone, so running the same
// merge twice is a no-op.
package ociindex

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/images/platform"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

// Errors a caller may branch on; each is wrapped with the details.
var (
	// ErrPlatformMismatch: a declared platform disagrees with the image
	// config (e.g. the arm64 build ran on an amd64 node).
	ErrPlatformMismatch = errors.New("declared platform does not match the image config")
	// ErrDuplicatePlatform: two different manifests for one platform.
	ErrDuplicatePlatform = errors.New("platform given more than once")
	// ErrMissingPlatform: a required platform is not in the index.
	ErrMissingPlatform = errors.New("required platform missing")
	// ErrFormat: a child cannot be referenced by the requested index format.
	ErrFormat = errors.New("child not allowed in this index format")
	// ErrNotIndex: the reference is a single image, not an index.
	ErrNotIndex = errors.New("not an image index")
	// ErrUnsupported: a manifest ciel cannot place in an index (schema 1,
	// nested indexes, unknown media types, images without a platform).
	ErrUnsupported = errors.New("unsupported manifest")
)

// Format is the kind of index written.
type Format string

const (
	// FormatOCI writes an OCI image index
	// (application/vnd.oci.image.index.v1+json).
	FormatOCI Format = "oci"
	// FormatDocker writes a Docker manifest list
	// (application/vnd.docker.distribution.manifest.list.v2+json). Its
	// children must be Docker schema 2 manifests: OCI manifests are refused,
	// not converted, because converting would change their digests.
	FormatDocker Format = "docker"
)

// DefaultJobs is how many manifests are read or linked in parallel.
const DefaultJobs = 4

type options struct {
	remote      []remote.Option
	format      Format
	annotations map[string]string
	replace     bool
	require     []v1.Platform
	jobs        int
	logger      *slog.Logger
}

// Option configures Build, Push, Create and Inspect.
type Option func(*options) error

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		remote: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)},
		format: FormatOCI,
		jobs:   DefaultJobs,
		logger: logopt.Discard(),
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	// Conflicts between options, checked once they are all applied.
	if o.format == FormatDocker && len(o.annotations) > 0 {
		return nil, fmt.Errorf("building a Docker manifest list: it cannot carry annotations (use the OCI format): %w", ErrFormat)
	}
	return o, nil
}

// WithRemoteOptions sets how registries are reached (credentials,
// transport, retries), e.g. from registryclient.Client.RemoteOptions.
// Default: authn.DefaultKeychain and go-containerregistry's defaults.
func WithRemoteOptions(opts ...remote.Option) Option {
	return option.Check(true, "", func(o *options) { o.remote = slices.Clone(opts) })
}

// WithFormat chooses the index format. FormatDocker conflicts with
// WithAnnotations. Default: FormatOCI.
func WithFormat(f Format) Option {
	return option.Check(f == FormatOCI || f == FormatDocker, fmt.Sprintf("unknown index format %q (want %q or %q)", f, FormatOCI, FormatDocker),
		func(o *options) { o.format = f })
}

// WithAnnotations sets annotations on the index itself. It conflicts with
// FormatDocker: a Docker manifest list has none. Default: none.
func WithAnnotations(a map[string]string) Option {
	return option.Check(!slices.ContainsFunc(slices.Collect(maps.Keys(a)), func(k string) bool { return strings.TrimSpace(k) == "" }),
		"annotation keys must not be empty", func(o *options) { o.annotations = maps.Clone(a) })
}

// WithReplace lets a later source replace an earlier one of the same
// platform instead of failing with ErrDuplicatePlatform. Default: false.
func WithReplace(replace bool) Option {
	return option.Check(true, "", func(o *options) { o.replace = replace })
}

// WithRequirePlatforms makes Build fail with ErrMissingPlatform unless every
// given platform is covered by an image in the index (a platform without a
// variant matches any variant). Default: none required.
func WithRequirePlatforms(ps ...v1.Platform) Option {
	return option.Err(platform.CheckRequired(ps...), func(o *options) { o.require = slices.Clone(ps) })
}

// WithJobs sets how many manifests are read or linked in parallel.
// Default: DefaultJobs.
func WithJobs(n int) Option {
	return option.Check(n >= 1, fmt.Sprintf("jobs must be at least 1, got %d", n), func(o *options) { o.jobs = n })
}

// WithLogger receives progress at debug level and notable decisions
// (replacements, dropped attestations, linked children) at info level.
// Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.logger, l) }
}
