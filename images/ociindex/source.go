package ociindex

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/images/platform"
)

// Source is one input of an index: an image (preferably by digest, as
// Kaniko's --digest-file gives it) or an index to flatten, with an optional
// declared platform.
type Source struct {
	Ref name.Reference
	// Platform, when set, is the platform the caller expects. For an image
	// it is checked against the image config; for an index it selects the
	// matching manifest (and its attestations) instead of all of them.
	Platform *v1.Platform
}

func (s Source) String() string {
	if s.Platform == nil {
		return s.Ref.String()
	}
	return s.Ref.String() + "=" + s.Platform.String()
}

// ParseSource parses "IMAGE" or "IMAGE=PLATFORM", e.g.
// "registry.example.com/app@sha256:…=linux/arm64/v8".
func ParseSource(s string, opts ...name.Option) (Source, error) {
	refStr, platStr, declared := strings.Cut(s, "=")
	ref, err := name.ParseReference(refStr, opts...)
	if err != nil {
		return Source{}, fmt.Errorf("parsing source %q: %w", s, err)
	}
	src := Source{Ref: ref}
	if declared {
		p, err := platform.ParseExact(platStr)
		if err != nil {
			return Source{}, fmt.Errorf("parsing source %q: %w", s, err)
		}
		src.Platform = &p
	}
	return src, nil
}

// ExpandTemplate turns manifest-tool's template form into sources: for each
// platform, OS, ARCH and VARIANT in template are replaced by its os,
// architecture and variant (empty if none), and the platform is declared.
// For example "reg/app:abc123-ARCH" with linux/amd64,linux/arm64 gives
// reg/app:abc123-amd64=linux/amd64 and reg/app:abc123-arm64=linux/arm64.
func ExpandTemplate(template string, platforms []v1.Platform, opts ...name.Option) ([]Source, error) {
	if len(platforms) == 0 {
		return nil, fmt.Errorf("template %q needs at least one platform", template)
	}
	if !strings.Contains(template, "ARCH") && !strings.Contains(template, "OS") && !strings.Contains(template, "VARIANT") {
		return nil, fmt.Errorf("template %q has none of OS, ARCH, VARIANT to substitute", template)
	}
	seen := map[string]string{}
	out := make([]Source, 0, len(platforms))
	for _, p := range platforms {
		refStr := strings.NewReplacer("ARCH", p.Architecture, "OS", p.OS, "VARIANT", p.Variant).Replace(template)
		if prev, dup := seen[refStr]; dup {
			return nil, fmt.Errorf("template %q gives %s for both %s and %s", template, refStr, prev, p.String())
		}
		seen[refStr] = p.String()
		ref, err := name.ParseReference(refStr, opts...)
		if err != nil {
			return nil, fmt.Errorf("expanding template %q for %s: %w", template, p.String(), err)
		}
		pc := p
		out = append(out, Source{Ref: ref, Platform: &pc})
	}
	return out, nil
}

// Missing returns the platforms of required that no image manifest of im
// matches (attestation manifests do not count).
func Missing(im *v1.IndexManifest, required []v1.Platform) []v1.Platform {
	var missing []v1.Platform
	for _, want := range required {
		found := false
		for _, d := range im.Manifests {
			if d.Platform != nil && !IsAttestation(d) && platform.Matches(*d.Platform, want) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, want)
		}
	}
	return missing
}

// platformKey identifies a platform for duplicate detection: linux/arm64
// and linux/arm64/v8 are one.
func platformKey(p v1.Platform) string { return platform.Complete(p).String() }

// comparePlatforms orders by os, architecture, variant, os.version.
func comparePlatforms(a, b v1.Platform) int {
	return cmp.Or(
		cmp.Compare(a.OS, b.OS),
		cmp.Compare(a.Architecture, b.Architecture),
		cmp.Compare(a.Variant, b.Variant),
		cmp.Compare(a.OSVersion, b.OSVersion),
	)
}

// Annotation keys BuildKit uses to tie an attestation manifest to the image
// manifest it describes.
const (
	AnnotationReferenceType   = "vnd.docker.reference.type"
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
)

// IsAttestation reports whether d describes an attestation (or another
// reference-type manifest) rather than a runnable image.
func IsAttestation(d v1.Descriptor) bool {
	_, ok := d.Annotations[AnnotationReferenceType]
	return ok
}

// formatPlatforms joins platforms for messages.
func formatPlatforms(ps []v1.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
