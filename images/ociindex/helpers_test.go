package ociindex

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

// pushRandom pushes a random image of the platform to repo.
func pushRandom(t testing.TB, repo, platform string) name.Digest {
	t.Helper()
	return registrytest.Push(t, repo, registrytest.RandomImages(t, platform)[0])
}

// staticImage is a deterministic image for platform p whose single layer
// holds seed; oci selects OCI media types instead of Docker ones.
func staticImage(t testing.TB, p v1.Platform, seed string, oci bool) v1.Image {
	t.Helper()
	layerType, manifestType, configType := types.DockerLayer, types.DockerManifestSchema2, types.DockerConfigJSON
	if oci {
		layerType, manifestType, configType = types.OCILayer, types.OCIManifestSchema1, types.OCIConfigJSON
	}
	img := mutate.MediaType(empty.Image, manifestType)
	img = mutate.ConfigMediaType(img, configType)
	img, err := mutate.AppendLayers(img, tarLayer(t, seed, layerType))
	if err != nil {
		t.Fatal(err)
	}
	return registrytest.WithPlatform(t, img, p)
}

// tarLayer is a deterministic gzipped tar layer holding one file.
func tarLayer(t testing.TB, content string, mt types.MediaType) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "seed", Mode: 0o644, Size: int64(len(content)), Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(mt))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// attestation is a BuildKit-style attestation manifest for subject.
func attestation(t testing.TB, subject v1.Image) (v1.Image, v1.Descriptor) {
	t.Helper()
	h, err := subject.Digest()
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1","subject":"`+h.String()+`"}`), "application/vnd.in-toto+json"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "unknown", "unknown"
	cf.RootFS.DiffIDs = nil // an in-toto statement is not a filesystem layer
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img, v1.Descriptor{
		Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{
			AnnotationReferenceType:   "attestation-manifest",
			AnnotationReferenceDigest: h.String(),
		},
	}
}

// sourceIndex builds an OCI index of images, each followed by an
// attestation for it, pushes it under tag and returns it.
func sourceIndex(t testing.TB, tag string, withAttestations bool, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	idx := registrytest.IndexOf(t, imgs...)
	if withAttestations {
		for _, img := range imgs {
			att, desc := attestation(t, img)
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: desc})
		}
	}
	registrytest.Push(t, tag, idx)
	return idx
}

// failedAs checks err against want, a part of the expected error message
// ("" when no error is expected), and reports whether the case failed as
// expected, leaving no result to check.
func failedAs(t testing.TB, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatal(err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("err = %v, want containing %q", err, want)
	}
	return want != ""
}

func src(t testing.TB, s string) Source {
	t.Helper()
	out, err := ParseSource(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func digestOf(t testing.TB, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

var bg = context.Background()

// mutateIndexOf wraps inner in a new index (an index of indexes).
func mutateIndexOf(t testing.TB, inner v1.ImageIndex) v1.ImageIndex {
	t.Helper()
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: inner})
}
