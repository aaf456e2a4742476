package clienttest

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

// TestStartReachesTheRegistryThroughTheProxy: an image pushed straight to
// the registry is read with Remote through the proxy, which counts it.
func TestStartReachesTheRegistryThroughTheProxy(t *testing.T) {
	e := Start(t)
	d := registrytest.Push(t, e.Registry.Host+"/team/app:v1", registrytest.RandomImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}))
	ref, err := name.ParseReference(e.Proxy.Host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, append(e.Remote, remote.WithContext(context.Background()))...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != d.DigestStr() {
		t.Errorf("read %s through the proxy, pushed %s", desc.Digest, d.DigestStr())
	}
	if n := e.Proxy.Count("HEAD", registrytest.KindManifest); n != 1 {
		t.Errorf("the proxy saw %d manifest HEADs, want 1\n%s", n, e.Proxy.Log())
	}
	if got := Head(t, e.Proxy.Host+"/team/app:v1", e.Remote...); got != d.DigestStr() {
		t.Errorf("Head = %q, want %s", got, d.DigestStr())
	}
	if got := Head(t, e.Proxy.Host+"/team/app:missing", e.Remote...); got != "" {
		t.Errorf("Head of a missing tag = %q, want \"\"", got)
	}
}
