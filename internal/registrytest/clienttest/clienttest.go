// Package clienttest holds the registry test helpers built on
// registryclient, which registrytest cannot hold because registryclient's
// own tests import registrytest: Start, the real docker-registry behind
// registrytest's counting proxy with the remote options of a registryclient
// that reaches it (what the integration tests of images/ociindex and
// images/release run against), and Head, what a reference points at.
package clienttest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/registryclient"
	"github.com/ciel-ci/ciel/internal/registrytest"
)

// Env is a real registry, the proxy in front of it, and the options that
// reach it.
type Env struct {
	Registry *registrytest.Registry
	Proxy    *registrytest.Proxy
	// Remote are registryclient's options (retrying 4 times from 5ms), to
	// pass to a package's WithRemoteOptions.
	Remote []remote.Option
}

// Start starts the registry (registrytest.Start: skipped, or failed under
// CIEL_REQUIRE_REAL=1, when the binary is missing) and its proxy; both stop
// when t ends.
func Start(t *testing.T) *Env {
	t.Helper()
	reg := registrytest.Start(t)
	c, err := registryclient.New(registryclient.WithRetry(4, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Registry: reg, Proxy: registrytest.NewProxy(t, reg), Remote: c.RemoteOptions(context.Background())}
}

// Head returns the digest ref points at, "" when nothing (read as the
// commands read it, with registryclient.Digest), or fails the test.
func Head(t testing.TB, ref string, opts ...remote.Option) string {
	t.Helper()
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := registryclient.Digest(context.Background(), puller, registrytest.Ref(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
