package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/images/platform"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
	"github.com/ciel-ci/ciel/internal/registryclient"
	"github.com/ciel-ci/ciel/internal/semver"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrImmutable is returned when the version's tag already points at another
// digest: releases are immutable unless forced.
var ErrImmutable = errors.New("release tag already points at another digest")

// ErrVerify is returned when a tag does not point at the promoted digest
// after it was written.
var ErrVerify = errors.New("promoted tag does not point at the promoted digest")

// Action is what a promotion does to a tag.
type Action string

// Actions.
const (
	// ActionCreate: the tag did not exist.
	ActionCreate Action = "create"
	// ActionMove: the tag pointed at another digest.
	ActionMove Action = "move"
	// ActionUnchanged: the tag already points at the digest.
	ActionUnchanged Action = "unchanged"
	// ActionKeep: the rules keep the tag where it is.
	ActionKeep Action = "keep"
)

// TagResult is the outcome for one tag.
type TagResult struct {
	Tag  string `json:"tag"`
	Kind Kind   `json:"kind"`
	// Old is the digest the tag pointed at before, "" if it did not exist.
	Old string `json:"old,omitempty"`
	// New is the digest the tag points at afterwards when the promotion
	// moves it (ActionCreate, ActionMove, ActionUnchanged); "" otherwise.
	New    string `json:"new,omitempty"`
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

// Report is the outcome of Promote.
type Report struct {
	// Source is the promoted index, pinned: REPO@sha256:….
	Source     string `json:"source"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	MediaType  string `json:"mediaType"`
	Version    string `json:"version"`
	DryRun     bool   `json:"dryRun"`
	// Linked is true when the index and its children were linked into
	// Repository from another repository (blob mounts, no copy).
	Linked bool        `json:"linked,omitempty"`
	Tags   []TagResult `json:"tags"`
}

// Changed returns the tags the promotion created or moved (or would, in a
// dry run).
func (r *Report) Changed() []string {
	var out []string
	for _, t := range r.Tags {
		if t.Action == ActionCreate || t.Action == ActionMove {
			out = append(out, t.Tag)
		}
	}
	return out
}

// Current returns the tags that point at the digest after the promotion.
func (r *Report) Current() []string {
	var out []string
	for _, t := range r.Tags {
		if t.New != "" {
			out = append(out, t.Tag)
		}
	}
	return out
}

type options struct {
	rules   Rules
	require []v1.Platform
	commit  string
	force   bool
	dryRun  bool
	remote  []remote.Option
	logger  *slog.Logger
}

// Option configures Promote.
type Option func(*options) error

// WithRules sets which tags are written. Default: the zero Rules (the exact
// version tag only).
func WithRules(r Rules) Option {
	r, err := r.withDefaults()
	return option.Err(err, func(o *options) { o.rules = r })
}

// WithRequirePlatforms makes Promote refuse an index that lacks one of the
// platforms (a platform without variant matches any variant). Default: none.
func WithRequirePlatforms(ps ...v1.Platform) Option {
	return option.Err(platform.CheckRequired(ps...), func(o *options) { o.require = slices.Clone(ps) })
}

// WithRevision makes Promote refuse (ociindex.ErrRevision) an index whose
// org.opencontainers.image.revision annotation is not commit, a full commit
// SHA (40 or 64 lowercase hex characters), or that has no such annotation.
// A release of a Git tag passes the tagged commit: whatever tag the index was
// found under, only an index built from that commit is released. Default: ""
// (no check).
func WithRevision(commit string) Option {
	var err error
	if commit != "" {
		err = ociindex.CheckCommit(commit)
	}
	return option.Err(err, func(o *options) { o.commit = commit })
}

// WithForce lets the exact version tag move to another digest. Default:
// false (releases are immutable; ErrImmutable).
func WithForce(force bool) Option {
	return option.Check(true, "", func(o *options) { o.force = force })
}

// WithDryRun reads and plans but writes nothing. Default: false.
func WithDryRun(dry bool) Option {
	return option.Check(true, "", func(o *options) { o.dryRun = dry })
}

// WithRemoteOptions sets how registries are reached (credentials,
// transport, retries), e.g. registryclient.Client.RemoteOptions. Default:
// authn.DefaultKeychain and go-containerregistry's defaults.
func WithRemoteOptions(opts ...remote.Option) Option {
	return option.Check(true, "", func(o *options) { o.remote = slices.Clone(opts) })
}

// WithLogger receives each write at info level. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.logger, l) }
}

// Promote tags the index from points at (by digest or by tag) in repo with
// the tags PlanTags decides for version. It reads everything first and
// refuses before writing: a single image (ociindex.ErrNotIndex), an index
// not built from the WithRevision commit (ociindex.ErrRevision), a missing
// required platform (ociindex.ErrMissingPlatform), a version tag already
// pointing elsewhere (ErrImmutable, unless WithForce). Each write is a
// manifest PUT of the index's exact bytes, so the digest cannot change; the
// tags are read back afterwards to verify (ErrVerify). Tags already pointing
// at the index are not written, so re-running a release is a no-op.
func Promote(ctx context.Context, from name.Reference, repo name.Repository, version semver.Version, opts ...Option) (*Report, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if _, err := exactTag(version, o.rules); err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(o.remote...)
	if err != nil {
		return nil, fmt.Errorf("configuring registry access: %w", err)
	}
	src, err := resolve(ctx, puller, from)
	if err != nil {
		return nil, err
	}
	if err := o.check(from, src); err != nil {
		return nil, err
	}
	plan, old, err := current(ctx, puller, repo, version, o.rules)
	if err != nil {
		return nil, err
	}
	if err := o.checkImmutable(repo, plan, old, src.Digest.String()); err != nil {
		return nil, err
	}
	rep := report(from, repo, version, src, plan, old, o.dryRun)
	if o.dryRun || len(rep.Changed()) == 0 {
		return rep, nil
	}
	if err := write(ctx, o, puller, repo, src, rep, old); err != nil {
		return nil, err
	}
	return rep, nil
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		remote: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)},
		logger: logopt.Discard(),
	}
	var err error
	if o.rules, err = (Rules{}).withDefaults(); err != nil {
		return nil, err
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// index is the promoted index as the registry serves it.
type index struct {
	*remote.Descriptor
	manifest *v1.IndexManifest
}

// resolve reads what from points at and refuses anything but an index.
func resolve(ctx context.Context, puller *remote.Puller, from name.Reference) (*index, error) {
	src, err := puller.Get(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", from, err)
	}
	if !src.MediaType.IsIndex() {
		return nil, fmt.Errorf("%s is a single image (%s); promote the multi-arch index built for the commit: %w",
			from, src.MediaType, ociindex.ErrNotIndex)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(src.Manifest))
	if err != nil {
		return nil, fmt.Errorf("parsing the index %s: %w", from, err)
	}
	return &index{Descriptor: src, manifest: im}, nil
}

// check refuses an index not built from the WithRevision commit or lacking
// a required platform.
func (o *options) check(from name.Reference, src *index) error {
	if o.commit != "" {
		if err := ociindex.CheckRevision(src.manifest.Annotations, o.commit); err != nil {
			return fmt.Errorf("%s@%s: %w", from.Context(), src.Digest, err)
		}
	}
	if missing := ociindex.Missing(src.manifest, o.require); len(missing) > 0 {
		var s []string
		for _, p := range missing {
			s = append(s, p.String())
		}
		return fmt.Errorf("%s@%s lacks %v: %w", from.Context(), src.Digest, s, ociindex.ErrMissingPlatform)
	}
	return nil
}

// current lists the tags of repo, plans the promotion of version, and
// reads what the tags that matter point at now (only tags that exist are
// read): tag -> digest.
func current(ctx context.Context, puller *remote.Puller, repo name.Repository, version semver.Version, rules Rules) (Plan, map[string]string, error) {
	existing, err := puller.List(ctx, repo)
	if err != nil && !registryclient.IsNotFound(err) {
		return Plan{}, nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	plan, err := PlanTags(version, existing, rules)
	if err != nil {
		return Plan{}, nil, err
	}
	check := slices.Clone(plan.SameVersion)
	for _, tp := range plan.Tags {
		check = append(check, tp.Tag)
	}
	var read []name.Tag
	for _, tag := range check {
		if slices.Contains(existing, tag) {
			read = append(read, repo.Tag(tag))
		}
	}
	digests, err := registryclient.Digests(ctx, puller, registryclient.DefaultJobs, read)
	if err != nil {
		return Plan{}, nil, err
	}
	old := make(map[string]string, len(read))
	for i, t := range read {
		old[t.TagStr()] = digests[i]
	}
	return plan, old, nil
}

// checkImmutable refuses, unless forced, to move the exact version tag (or
// another spelling of the version) that points at another digest.
func (o *options) checkImmutable(repo name.Repository, plan Plan, old map[string]string, digest string) error {
	if o.force {
		return nil
	}
	var refused []error
	for _, tag := range append([]string{plan.Tags[0].Tag}, plan.SameVersion...) {
		if d := old[tag]; d != "" && d != digest {
			refused = append(refused, fmt.Errorf("%s already points at %s, not %s; releases are immutable (force to overwrite): %w",
				repo.Tag(tag), d, digest, ErrImmutable))
		}
	}
	return errors.Join(refused...)
}

// report says what the promotion does to each planned tag.
func report(from name.Reference, repo name.Repository, version semver.Version, src *index, plan Plan, old map[string]string, dryRun bool) *Report {
	digest := src.Digest.String()
	rep := &Report{
		Source:     from.Context().Digest(digest).String(),
		Repository: repo.String(),
		Digest:     digest,
		MediaType:  string(src.MediaType),
		Version:    version.Original,
		DryRun:     dryRun,
		Linked:     from.Context().String() != repo.String(),
	}
	for _, tp := range plan.Tags {
		tr := TagResult{Tag: tp.Tag, Kind: tp.Kind, Old: old[tp.Tag], Reason: tp.Reason}
		switch {
		case !tp.Move:
			tr.Action = ActionKeep
		case tr.Old == digest:
			tr.Action, tr.New = ActionUnchanged, digest
		case tr.Old == "":
			tr.Action, tr.New = ActionCreate, digest
		default:
			tr.Action, tr.New = ActionMove, digest
		}
		rep.Tags = append(rep.Tags, tr)
	}
	return rep
}

// write links the index into repo when it was read elsewhere, PUTs it under
// every changed tag, and reads the tags back.
func write(ctx context.Context, o *options, puller *remote.Puller, repo name.Repository, src *index, rep *Report, old map[string]string) error {
	pusher, err := remote.NewPusher(o.remote...)
	if err != nil {
		return fmt.Errorf("configuring registry access: %w", err)
	}
	if rep.Linked {
		// The index and its children must exist in repo before a tag can
		// point at them: mount their blobs and PUT them by digest.
		if err := pusher.Push(ctx, repo.Digest(rep.Digest), src.Descriptor); err != nil {
			return fmt.Errorf("linking %s into %s: %w", rep.Source, repo, err)
		}
	}
	changed := rep.Changed()
	for _, tag := range changed {
		if err := pusher.Put(ctx, repo.Tag(tag), src.Descriptor); err != nil {
			return fmt.Errorf("tagging %s as %s: %w", rep.Source, repo.Tag(tag), err)
		}
		o.logger.Info("promoted", "tag", repo.Tag(tag).String(), "digest", rep.Digest, "previous", old[tag])
	}
	for _, tag := range changed {
		d, err := puller.Head(ctx, repo.Tag(tag))
		if err != nil {
			return fmt.Errorf("verifying %s: %w", repo.Tag(tag), err)
		}
		if d.Digest.String() != rep.Digest {
			return fmt.Errorf("%s points at %s after the promotion, not %s: %w", repo.Tag(tag), d.Digest, rep.Digest, ErrVerify)
		}
	}
	return nil
}
