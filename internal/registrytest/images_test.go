package registrytest

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMemoryPushIndexOf(t *testing.T) {
	host := Memory(t)
	amd := RandomImage(t, v1.Platform{OS: "linux", Architecture: "amd64"})
	arm := RandomImage(t, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"})

	// A bare repository is written by digest, a tag under its tag.
	byDigest := Push(t, host+"/app", amd)
	if h, _ := amd.Digest(); byDigest.String() != host+"/app@"+h.String() {
		t.Errorf("Push to a repository = %s, want it by digest %s", byDigest, h)
	}
	ix := Push(t, host+"/app:multi", IndexOf(t, amd, arm))

	idx := ValidIndex(t, ix.Context().Tag("multi"))
	if h, _ := idx.Digest(); h.String() != ix.DigestStr() {
		t.Errorf("the tag points at %s, Push said %s", h, ix.DigestStr())
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.String())
	}
	if len(got) != 2 || got[0] != "linux/amd64" || got[1] != "linux/arm/v6" {
		t.Errorf("IndexOf lists %v, want the platforms of the configs in order", got)
	}
	if _, err := remote.Head(byDigest); err != nil {
		t.Errorf("the image pushed by digest is not there: %v", err)
	}
}
