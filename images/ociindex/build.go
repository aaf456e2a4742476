package ociindex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/ciel-ci/ciel/images/platform"
)

// Child is one manifest of a built index.
type Child struct {
	// Descriptor is the entry as written into the index; for an image its
	// platform is the one read from the image config.
	Descriptor v1.Descriptor
	// Source is where the manifest was read: repository and digest.
	Source name.Digest
	// Input is the source the child came from, as given to Build.
	Input string
	// Subject is, for an attestation, the digest of the manifest it
	// describes; nil for an image.
	Subject *v1.Hash

	desc *remote.Descriptor // fetched manifest, kept to link it elsewhere
}

// Index is an index built from sources, ready to push: the manifest
// go-containerregistry's mutate.AppendManifests builds on empty.Index,
// encoded once, with what Build learnt about each child. It implements
// remote.Taggable and partial.Describable (not v1.ImageIndex: its children
// are linked by Push, not walked).
type Index struct {
	manifest v1.IndexManifest
	raw      []byte
	digest   v1.Hash
	children []Child
	replaced []Child
	dropped  []Child

	puller *remote.Puller
}

// RawManifest returns the index JSON exactly as it is pushed.
func (ix *Index) RawManifest() ([]byte, error) { return slices.Clone(ix.raw), nil }

// MediaType returns the index media type.
func (ix *Index) MediaType() (types.MediaType, error) { return ix.manifest.MediaType, nil }

// Digest returns the index digest.
func (ix *Index) Digest() (v1.Hash, error) { return ix.digest, nil }

// Size returns the size of the index JSON in bytes.
func (ix *Index) Size() (int64, error) { return int64(len(ix.raw)), nil }

// Manifest returns the parsed index.
func (ix *Index) Manifest() *v1.IndexManifest { return ix.manifest.DeepCopy() }

// Children returns the manifests of the index, in index order.
func (ix *Index) Children() []Child { return slices.Clone(ix.children) }

// Replaced returns the manifests a later source of the same platform
// replaced (WithReplace).
func (ix *Index) Replaced() []Child { return slices.Clone(ix.replaced) }

// Dropped returns the attestation manifests left out because the manifest
// they describe is not in the index (not selected, or replaced).
func (ix *Index) Dropped() []Child { return slices.Clone(ix.dropped) }

// Build reads every source and builds the index without writing anything.
// Sources in several repositories and registries may be mixed.
func Build(ctx context.Context, sources []Source, opts ...Option) (*Index, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(sources) == 0 {
		return nil, errors.New("building an index: no source images given")
	}
	puller, err := remote.NewPuller(o.remote...)
	if err != nil {
		return nil, fmt.Errorf("configuring registry access: %w", err)
	}
	b := &builder{o: o, puller: puller}

	// Stage 1: every source manifest (and, for an image, its config).
	per := make([][]*Child, len(sources))
	pending := make([][]pendingChild, len(sources))
	errs := make([]error, len(sources))
	g := new(errgroup.Group)
	g.SetLimit(o.jobs)
	for i, src := range sources {
		g.Go(func() error {
			per[i], pending[i], errs[i] = b.readSource(ctx, src)
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// Stage 2: the platform manifests of sources that are indexes.
	type slot struct {
		src   int
		child *Child
		err   error
	}
	var slots []*slot
	g = new(errgroup.Group)
	g.SetLimit(o.jobs)
	for i := range pending {
		for _, pc := range pending[i] {
			s := &slot{src: i}
			slots = append(slots, s)
			g.Go(func() error {
				s.child, s.err = b.readChild(ctx, sources[i], pc)
				return nil
			})
		}
	}
	_ = g.Wait()
	errs = errs[:0]
	for _, s := range slots {
		errs = append(errs, s.err)
		if s.child != nil {
			per[s.src] = append(per[s.src], s.child)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	ix, err := assemble(o, per)
	if err != nil {
		return nil, err
	}

	// Attestations are not read (their platform is not in a config), but
	// they must exist before an index refers to them.
	g = new(errgroup.Group)
	g.SetLimit(o.jobs)
	attErrs := make([]error, len(ix.children))
	for i, c := range ix.children {
		if c.Subject == nil {
			continue
		}
		g.Go(func() error {
			if _, err := puller.Head(ctx, c.Source); err != nil {
				attErrs[i] = fmt.Errorf("checking attestation %s (from %s): %w", c.Source, c.Input, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(attErrs...); err != nil {
		return nil, err
	}
	ix.puller = puller
	return ix, nil
}

type builder struct {
	o      *options
	puller *remote.Puller
}

// pendingChild is an entry of a source index still to be read.
type pendingChild struct {
	repo name.Repository
	desc v1.Descriptor
}

// readSource fetches a source. An image is read completely; an index yields
// its attestations (checked to exist) and the platform manifests to read.
func (b *builder) readSource(ctx context.Context, src Source) ([]*Child, []pendingChild, error) {
	d, err := b.puller.Get(ctx, src.Ref)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", src.Ref, err)
	}
	repo := src.Ref.Context()
	b.o.logger.Debug("read source", "source", src.String(), "mediaType", string(d.MediaType), "digest", d.Digest.String())
	switch {
	case d.MediaType.IsImage():
		c, err := b.imageChild(src, repo, d, nil)
		if err != nil {
			return nil, nil, err
		}
		return []*Child{c}, nil, nil
	case d.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest))
		if err != nil {
			return nil, nil, fmt.Errorf("parsing index %s: %w", src.Ref, err)
		}
		var atts []*Child
		var todo []pendingChild
		for _, m := range im.Manifests {
			switch {
			case IsAttestation(m):
				subj, err := v1.NewHash(m.Annotations[AnnotationReferenceDigest])
				if err != nil {
					return nil, nil, fmt.Errorf("index %s: attestation %s has no valid %s annotation: %w",
						src.Ref, m.Digest, AnnotationReferenceDigest, ErrUnsupported)
				}
				atts = append(atts, &Child{Descriptor: m, Source: repo.Digest(m.Digest.String()), Input: src.String(), Subject: &subj})
			case m.MediaType.IsIndex():
				return nil, nil, fmt.Errorf("index %s: nested index %s cannot be flattened: %w", src.Ref, m.Digest, ErrUnsupported)
			case m.MediaType.IsImage():
				if src.Platform != nil && (m.Platform == nil || !platform.Matches(*m.Platform, *src.Platform)) {
					continue // not the declared platform: not selected
				}
				todo = append(todo, pendingChild{repo: repo, desc: m})
			default:
				return nil, nil, fmt.Errorf("index %s: manifest %s has media type %q, neither an image nor an attestation: %w",
					src.Ref, m.Digest, m.MediaType, ErrUnsupported)
			}
		}
		if src.Platform != nil && len(todo) == 0 {
			return nil, nil, fmt.Errorf("index %s has no manifest for the declared platform %s: %w",
				src.Ref, src.Platform.String(), ErrPlatformMismatch)
		}
		return atts, todo, nil
	case d.MediaType.IsSchema1():
		return nil, nil, fmt.Errorf("%s is a Docker schema 1 manifest, which cannot be part of an index: %w", src.Ref, ErrUnsupported)
	default:
		return nil, nil, fmt.Errorf("%s has media type %q, neither an image nor an index: %w", src.Ref, d.MediaType, ErrUnsupported)
	}
}

// readChild reads one platform manifest of a source index.
func (b *builder) readChild(ctx context.Context, src Source, pc pendingChild) (*Child, error) {
	ref := pc.repo.Digest(pc.desc.Digest.String())
	d, err := b.puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("reading %s (in index %s): %w", ref, src.Ref, err)
	}
	return b.imageChild(src, pc.repo, d, &pc.desc)
}

// imageChild reads the config of an image manifest and makes its entry.
// listed is the entry of the index it was listed in, if any.
func (b *builder) imageChild(src Source, repo name.Repository, d *remote.Descriptor, listed *v1.Descriptor) (*Child, error) {
	img, err := d.Image()
	if err != nil {
		return nil, fmt.Errorf("reading image %s@%s: %w", repo, d.Digest, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s@%s: %w", repo, d.Digest, err)
	}
	p := cf.Platform()
	if p == nil || p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("the config of %s@%s names no os and architecture, so it has no place in an index: %w",
			repo, d.Digest, ErrUnsupported)
	}
	if listed != nil && listed.Platform != nil && !platform.Matches(*p, *listed.Platform) {
		return nil, fmt.Errorf("index %s lists %s as %s but its image config says %s: %w",
			src.Ref, d.Digest, listed.Platform.String(), p.String(), ErrPlatformMismatch)
	}
	if src.Platform != nil && !platform.Matches(*p, *src.Platform) {
		return nil, fmt.Errorf("%s was declared %s but its image config says %s (was it built on a %s node?): %w",
			src.Ref, src.Platform.String(), p.String(), p.OS+"/"+p.Architecture, ErrPlatformMismatch)
	}
	entry := v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest, Platform: p}
	if listed != nil {
		// Keep what the source index said about the manifest (annotations,
		// artifact type), with the platform from the config.
		entry = *listed.DeepCopy()
		entry.Platform = p
	}
	return &Child{
		Descriptor: entry,
		Source:     repo.Digest(d.Digest.String()),
		Input:      src.String(),
		desc:       d,
	}, nil
}

// assemble checks duplicates, the required platforms and the format, orders
// the children and encodes the index. per holds the children of each source
// in source order.
func assemble(o *options, per [][]*Child) (*Index, error) {
	ix := &Index{}
	byKey := map[string]int{} // platform key -> position in images
	var images []*Child
	var atts []*Child
	var dupErrs []error
	for _, kids := range per {
		for _, c := range kids {
			if c.Subject != nil {
				atts = append(atts, c)
				continue
			}
			key := platformKey(*c.Descriptor.Platform)
			at, dup := byKey[key]
			if !dup {
				byKey[key] = len(images)
				images = append(images, c)
				continue
			}
			prev := images[at]
			switch {
			case prev.Descriptor.Digest == c.Descriptor.Digest:
				// The same manifest twice is not ambiguous.
			case o.replace:
				o.logger.Info("replacing manifest", "platform", c.Descriptor.Platform.String(),
					"old", prev.Source.String(), "new", c.Source.String())
				ix.replaced = append(ix.replaced, *prev)
				images[at] = c
			default:
				dupErrs = append(dupErrs, fmt.Errorf("%s is given by both %s (%s) and %s (%s): %w",
					c.Descriptor.Platform.String(), prev.Input, prev.Descriptor.Digest, c.Input, c.Descriptor.Digest,
					ErrDuplicatePlatform))
			}
		}
	}
	if err := errors.Join(dupErrs...); err != nil {
		return nil, err
	}

	slices.SortFunc(images, func(a, b *Child) int {
		if c := comparePlatforms(*a.Descriptor.Platform, *b.Descriptor.Platform); c != 0 {
			return c
		}
		return compareHash(a.Descriptor.Digest, b.Descriptor.Digest)
	})
	pos := map[v1.Hash]int{}
	for i, c := range images {
		pos[c.Descriptor.Digest] = i
	}
	var keptAtts []*Child
	seenAtt := map[v1.Hash]bool{}
	for _, a := range atts {
		if _, ok := pos[*a.Subject]; !ok {
			o.logger.Info("dropping attestation of a manifest not in the index", "attestation", a.Source.String(), "subject", a.Subject.String())
			ix.dropped = append(ix.dropped, *a)
			continue
		}
		if seenAtt[a.Descriptor.Digest] {
			continue
		}
		seenAtt[a.Descriptor.Digest] = true
		keptAtts = append(keptAtts, a)
	}
	slices.SortFunc(keptAtts, func(a, b *Child) int {
		if c := pos[*a.Subject] - pos[*b.Subject]; c != 0 {
			return c
		}
		return compareHash(a.Descriptor.Digest, b.Descriptor.Digest)
	})

	mt := types.OCIImageIndex
	if o.format == FormatDocker {
		mt = types.DockerManifestList
		var bad []error
		for _, c := range append(slices.Clone(images), keptAtts...) {
			if c.Descriptor.MediaType != types.DockerManifestSchema2 {
				bad = append(bad, fmt.Errorf("%s (%s, from %s) is %s; a Docker manifest list references Docker schema 2 manifests only, and converting it would change its digest (use the OCI format): %w",
					c.Descriptor.Digest, describe(c), c.Input, c.Descriptor.MediaType, ErrFormat))
			}
		}
		if err := errors.Join(bad...); err != nil {
			return nil, err
		}
	}

	for _, c := range images {
		ix.children = append(ix.children, *c)
	}
	for _, c := range keptAtts {
		ix.children = append(ix.children, *c)
	}
	idx, err := indexOf(mt, o.annotations, ix.children)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("encoding the index: %w", err)
	}
	if missing := Missing(im, o.require); len(missing) > 0 {
		have := make([]v1.Platform, 0, len(images))
		for _, c := range images {
			have = append(have, *c.Descriptor.Platform)
		}
		return nil, fmt.Errorf("the index would lack %s (it has %s): %w", formatPlatforms(missing), formatPlatforms(have), ErrMissingPlatform)
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("encoding the index: %w", err)
	}
	h, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("hashing the index: %w", err)
	}
	ix.manifest, ix.raw, ix.digest = *im, raw, h
	return ix, nil
}

// indexOf builds the index the way ko and crane do, mutate.AppendManifests
// on empty.Index, with each child's descriptor exactly as given (entry). Its
// JSON is the one go-containerregistry encodes, so the same children in the
// same order give the same digest (TestBuildIsDeterministic holds the bytes
// with a golden file).
func indexOf(mt types.MediaType, annotations map[string]string, children []Child) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, mt)
	if len(annotations) > 0 {
		var ok bool
		if idx, ok = mutate.Annotations(idx, annotations).(v1.ImageIndex); !ok {
			return nil, errors.New("annotating the index: go-containerregistry returned no index")
		}
	}
	adds := make([]mutate.IndexAddendum, len(children))
	for i, c := range children {
		adds[i] = mutate.IndexAddendum{Add: entry{c.Descriptor}}
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// entry is a manifest known by its descriptor alone: the index refers to
// it and never reads it (it is not an image go-containerregistry could walk,
// and Push writes the index manifest only, the children being linked
// beforehand).
type entry struct{ d v1.Descriptor }

var _ remote.Taggable = (*Index)(nil)
var _ partial.Describable = entry{}

// Descriptor is what partial.Descriptor, and so mutate, puts in the index.
func (e entry) Descriptor() (*v1.Descriptor, error) { return e.d.DeepCopy(), nil }

func (e entry) Digest() (v1.Hash, error)            { return e.d.Digest, nil }
func (e entry) Size() (int64, error)                { return e.d.Size, nil }
func (e entry) MediaType() (types.MediaType, error) { return e.d.MediaType, nil }

func describe(c *Child) string {
	if c.Subject != nil {
		return "attestation of " + c.Subject.String()
	}
	return c.Descriptor.Platform.String()
}

func compareHash(a, b v1.Hash) int {
	if a.String() < b.String() {
		return -1
	}
	if a.String() > b.String() {
		return 1
	}
	return 0
}
