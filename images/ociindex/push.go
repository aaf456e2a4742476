package ociindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/ciel-ci/ciel/internal/registryclient"
)

// TagResult says what happened to one tag.
type TagResult struct {
	Tag name.Tag
	// Previous is the digest the tag pointed at before, "" if it did not
	// exist.
	Previous string
	// Updated is false when the tag already pointed at the index.
	Updated bool
}

// Result is the outcome of Push or Create.
type Result struct {
	Index *Index
	Tags  []TagResult
	// Linked lists the child manifests written into a target repository
	// (by blob mount and manifest PUT) because they were read elsewhere.
	Linked []name.Digest
}

// Create builds the index from sources (Build) and pushes it under every
// tag (Push). Nothing is written if any source fails its checks.
func Create(ctx context.Context, tags []name.Tag, sources []Source, opts ...Option) (*Result, error) {
	if len(tags) == 0 {
		return nil, errors.New("creating an index: no tag given")
	}
	ix, err := Build(ctx, sources, opts...)
	if err != nil {
		return nil, err
	}
	return Push(ctx, ix, tags, opts...)
}

// Push makes every tag point at ix. It first reads what each tag points at
// and leaves tags already pointing at ix alone; then it makes sure every
// child manifest exists in each repository still to be written, linking
// children read from another repository; only then is the index PUT.
// ix must come from Build.
func Push(ctx context.Context, ix *Index, tags []name.Tag, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if ix == nil || ix.raw == nil {
		return nil, errors.New("pushing an index: the index was not built with Build")
	}
	if len(tags) == 0 {
		return nil, errors.New("pushing an index: no tag given")
	}
	puller := ix.puller
	if puller == nil {
		if puller, err = remote.NewPuller(o.remote...); err != nil {
			return nil, fmt.Errorf("configuring registry access: %w", err)
		}
	}
	res := &Result{Index: ix, Tags: make([]TagResult, len(tags))}

	// What does each tag point at now?
	prev, err := registryclient.Digests(ctx, puller, o.jobs, tags)
	if err != nil {
		return nil, err
	}
	var repos []name.Repository
	seenRepo := map[string]bool{}
	for i := range res.Tags {
		tr := &res.Tags[i]
		tr.Tag, tr.Previous = tags[i], prev[i]
		if tr.Previous == ix.digest.String() {
			o.logger.Debug("tag already points at the index", "tag", tr.Tag.String())
			continue
		}
		tr.Updated = true
		if r := tr.Tag.Context(); !seenRepo[r.String()] {
			seenRepo[r.String()] = true
			repos = append(repos, r)
		}
	}
	if len(repos) == 0 {
		return res, nil
	}

	pusher, err := remote.NewPusher(o.remote...)
	if err != nil {
		return nil, fmt.Errorf("configuring registry access: %w", err)
	}
	linked, err := link(ctx, o, puller, pusher, ix, repos)
	if err != nil {
		return nil, err
	}
	res.Linked = linked

	for _, tr := range res.Tags {
		if !tr.Updated {
			continue
		}
		if err := pusher.Put(ctx, tr.Tag, ix); err != nil {
			return nil, fmt.Errorf("pushing the index to %s: %w", tr.Tag, err)
		}
		o.logger.Info("pushed index", "tag", tr.Tag.String(), "digest", ix.digest.String(), "previous", tr.Previous)
	}
	return res, nil
}

// link writes into each repository the children read from elsewhere. A
// child from another repository of the same registry is mounted blob by
// blob (nothing is downloaded or uploaded) and its manifest PUT by digest;
// one already present is only checked.
func link(ctx context.Context, o *options, puller *remote.Puller, pusher *remote.Pusher, ix *Index, repos []name.Repository) ([]name.Digest, error) {
	type job struct {
		child  Child
		target name.Digest
	}
	var jobs []job
	for _, repo := range repos {
		for _, c := range ix.children {
			if c.Source.Context().String() == repo.String() {
				continue // read from this repository: known to exist
			}
			jobs = append(jobs, job{child: c, target: repo.Digest(c.Descriptor.Digest.String())})
		}
	}
	g := new(errgroup.Group)
	g.SetLimit(o.jobs)
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		g.Go(func() error {
			d := j.child.desc
			if d == nil {
				var err error
				if d, err = puller.Get(ctx, j.child.Source); err != nil {
					errs[i] = fmt.Errorf("reading %s to link it into %s: %w", j.child.Source, j.target.Context(), err)
					return nil
				}
			}
			if j.child.Source.Context().RegistryStr() != j.target.Context().RegistryStr() {
				o.logger.Info("copying a manifest across registries: its blobs are downloaded and uploaded",
					"from", j.child.Source.String(), "to", j.target.String())
			}
			if err := pusher.Push(ctx, j.target, d); err != nil {
				errs[i] = fmt.Errorf("linking %s into %s: %w", j.child.Source, j.target.Context(), err)
				return nil
			}
			o.logger.Debug("linked child", "from", j.child.Source.String(), "to", j.target.String())
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]name.Digest, len(jobs))
	for i, j := range jobs {
		out[i] = j.target
	}
	return out, nil
}

// Digest returns the digest of the pushed index.
func (r *Result) Digest() v1.Hash { return r.Index.digest }
