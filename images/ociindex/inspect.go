package ociindex

import (
	"bytes"
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Summary describes an index as a registry serves it.
type Summary struct {
	// Reference is the pinned reference, REPO@sha256:….
	Reference   string            `json:"reference"`
	MediaType   types.MediaType   `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Manifests   []Entry           `json:"manifests"`
}

// Entry is one manifest listed by an index.
type Entry struct {
	// Platform is the platform the index states ("linux/arm64/v8"), ""
	// when it states none.
	Platform    string            `json:"platform,omitempty"`
	Digest      string            `json:"digest"`
	MediaType   types.MediaType   `json:"mediaType"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// AttestationFor is, for an attestation manifest, the digest of the
	// manifest it describes.
	AttestationFor string `json:"attestationFor,omitempty"`
	// PlatformDetail is the platform as the index states it, for
	// os.features and the like.
	PlatformDetail *v1.Platform `json:"platformDetail,omitempty"`
}

// Inspect reads the index ref points at. It fails with ErrNotIndex when ref
// is a single image. Only WithRemoteOptions applies.
func Inspect(ctx context.Context, ref name.Reference, opts ...Option) (*Summary, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(o.remote...)
	if err != nil {
		return nil, fmt.Errorf("configuring registry access: %w", err)
	}
	d, err := puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return Summarize(ref.Context(), d.Manifest, d.MediaType)
}

// Summarize describes the raw index manifest raw of media type mt found in
// repo. It fails with ErrNotIndex unless mt is an index media type.
func Summarize(repo name.Repository, raw []byte, mt types.MediaType) (*Summary, error) {
	if !mt.IsIndex() {
		return nil, fmt.Errorf("%s is %s: %w", repo, mt, ErrNotIndex)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing the index in %s: %w", repo, err)
	}
	h, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	s := &Summary{
		Reference:   repo.Digest(h.String()).String(),
		MediaType:   mt,
		Digest:      h.String(),
		Size:        size,
		Annotations: im.Annotations,
		Manifests:   make([]Entry, 0, len(im.Manifests)),
	}
	for _, m := range im.Manifests {
		e := Entry{Digest: m.Digest.String(), MediaType: m.MediaType, Size: m.Size, Annotations: m.Annotations, PlatformDetail: m.Platform}
		if m.Platform != nil {
			e.Platform = m.Platform.String()
		}
		if IsAttestation(m) {
			e.AttestationFor = m.Annotations[AnnotationReferenceDigest]
		}
		s.Manifests = append(s.Manifests, e)
	}
	return s, nil
}
