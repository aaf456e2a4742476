package registrytest

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Memory starts go-containerregistry's in-memory registry (pkg/registry),
// the unit tests' registry, and returns its host; it stops with the test.
func Memory(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// WithPlatform returns img with its config stating platform p (os,
// architecture, variant, os.version).
func WithPlatform(t testing.TB, img v1.Image, p v1.Platform) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// RandomImage is a random image of two layers for platform p.
func RandomImage(t testing.TB, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return WithPlatform(t, img, p)
}

// RandomImages returns a RandomImage for each platform, written as
// Platform reads it ("os/arch[/variant]").
func RandomImages(t testing.TB, platforms ...string) []v1.Image {
	t.Helper()
	var out []v1.Image
	for _, p := range platforms {
		out = append(out, RandomImage(t, Platform(t, p)))
	}
	return out
}

// IndexOf is an OCI index of imgs, each listed with the platform its config
// states, as docker buildx writes one.
func IndexOf(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	adds := make([]mutate.IndexAddendum, len(imgs))
	for i, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}}
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

// Push writes img or an index (v1.Image or v1.ImageIndex) to ref, a tag or
// a bare repository (then by digest), and returns REPO@DIGEST.
func Push(t testing.TB, ref string, x remote.Taggable, opts ...remote.Option) name.Digest {
	t.Helper()
	h, err := x.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.WithDefaultTag(""))
	if err != nil {
		t.Fatal(err)
	}
	if tag, ok := r.(name.Tag); ok && tag.TagStr() == "" {
		r = r.Context().Digest(h.String())
	}
	switch x := x.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, x, opts...)
	case v1.Image:
		err = remote.Write(r, x, opts...)
	default:
		t.Fatalf("pushing %T: neither an image nor an index", x)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", r, err)
	}
	return r.Context().Digest(h.String())
}

// ValidIndex reads the index ref points at and checks it with
// go-containerregistry's validate.Index (every child and blob present and
// consistent).
func ValidIndex(t testing.TB, ref name.Reference, opts ...remote.Option) v1.ImageIndex {
	t.Helper()
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index(%s): %v", ref, err)
	}
	return idx
}
