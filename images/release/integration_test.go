package release

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type realEnv struct {
	reg   *registrytest.Registry
	proxy *registrytest.Proxy
	opt   Option
}

func startReal(t *testing.T) *realEnv {
	t.Helper()
	r := clienttest.Start(t)
	return &realEnv{reg: r.Registry, proxy: r.Proxy, opt: WithRemoteOptions(r.Remote...)}
}

func TestRealPromote(t *testing.T) {
	e := startReal(t)
	direct := e.reg.Host + "/team/app"
	repo := e.proxy.Host + "/team/app"
	d142 := multiArch(t, direct+":1a2b3c4", "linux/amd64", "linux/arm64")
	e.proxy.Reset()

	rep := mustPromote(t, repo+":1a2b3c4", repo, "v1.4.2", WithRules(Rules{Floating: true}), e.opt)
	if len(rep.Changed()) != 4 {
		t.Fatalf("changed %v, want 4 tags", rep.Changed())
	}
	// A promotion is manifest PUTs only: no blob is read, checked or copied.
	// Reads and writes share one API version check (registryclient).
	counts := e.proxy.Counts()
	want := map[string]int{
		"GET ping": 1, "GET manifest": 1, "GET tags": 1,
		"PUT manifest": 4, "HEAD manifest": 4, // four PUTs, each verified
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("requests (-want +got):\n%s\n%s", diff, e.proxy.Log())
	}
	// Registry 2.8 serves the OCI index (right Accept header) with the
	// promoted digest under every tag.
	for _, tag := range []string{"v1.4.2", "v1.4", "v1", "latest"} {
		idx, err := remote.Index(registrytest.Ref(t, direct+":"+tag))
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := idx.Digest(); h.String() != d142 {
			t.Errorf("%s serves %s, want %s", tag, h, d142)
		}
	}

	// Re-running reads only.
	e.proxy.Reset()
	mustPromote(t, repo+"@"+d142, repo, "v1.4.2", WithRules(Rules{Floating: true}), e.opt)
	if w := e.proxy.Writes(); len(w) != 0 {
		t.Errorf("a re-run wrote: %v", w)
	}

	// A backport moves v1.3 only; a dry run of it writes nothing.
	d139 := multiArch(t, direct+":9f8e7d6", "linux/amd64", "linux/arm64")
	e.proxy.Reset()
	dry := mustPromote(t, repo+":9f8e7d6", repo, "v1.3.9", WithRules(Rules{Floating: true}), WithDryRun(true), e.opt)
	if w := e.proxy.Writes(); len(w) != 0 {
		t.Errorf("a dry run wrote: %v", w)
	}
	rep = mustPromote(t, repo+":9f8e7d6", repo, "v1.3.9", WithRules(Rules{Floating: true}), e.opt)
	if diff := cmp.Diff(actions(dry), actions(rep)); diff != "" {
		t.Errorf("dry run and real run differ (-dry +real):\n%s", diff)
	}
	if got := map[string]string{"v1.3": clienttest.Head(t, direct+":v1.3"), "v1": clienttest.Head(t, direct+":v1"), "latest": clienttest.Head(t, direct+":latest")}; got["v1.3"] != d139 || got["v1"] != d142 || got["latest"] != d142 {
		t.Errorf("after the backport: %v", got)
	}
}

func TestRealPromoteRefusalWritesNothing(t *testing.T) {
	e := startReal(t)
	direct := e.reg.Host + "/team/app"
	repo := e.proxy.Host + "/team/app"
	multiArch(t, direct+":a", "linux/amd64", "linux/arm64")
	multiArch(t, direct+":b", "linux/amd64", "linux/arm64")
	amd := multiArch(t, direct+":amd", "linux/amd64")
	mustPromote(t, repo+":a", repo, "v1.0.0", e.opt)
	e.proxy.Reset()
	_, err := promote(t, repo+":b", repo, "v1.0.0", WithRules(Rules{Floating: true}), e.opt)
	if !errors.Is(err, ErrImmutable) {
		t.Fatalf("err = %v, want ErrImmutable", err)
	}
	_, err = promote(t, repo+"@"+amd, repo, "v2.0.0", e.opt, WithRequirePlatforms(registrytest.Platform(t, "linux/amd64"), registrytest.Platform(t, "linux/arm64")))
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") {
		t.Fatalf("err = %v, want a missing linux/arm64", err)
	}
	if w := e.proxy.Writes(); len(w) != 0 {
		t.Errorf("refused promotions wrote: %v", w)
	}
}

func TestRealPromoteAcrossRepositoriesMountsOnly(t *testing.T) {
	e := startReal(t)
	d := multiArch(t, e.reg.Host+"/team/app-ci:1a2b3c4", "linux/amd64", "linux/arm64")
	e.proxy.Reset()
	rep := mustPromote(t, e.proxy.Host+"/team/app-ci:1a2b3c4", e.proxy.Host+"/team/app", "v1.0.0", e.opt)
	if !rep.Linked {
		t.Error("report does not say the index was linked")
	}
	counts := e.proxy.Counts()
	// Two images of two layers and a config each: six mounts, and no blob
	// downloaded or uploaded.
	if counts["POST mount"] != 6 || counts["GET blob"] != 0 || counts["PATCH upload"]+counts["PUT upload"]+counts["POST upload"] != 0 {
		t.Errorf("blob traffic: %s\n%s", e.proxy.SortedCounts(), e.proxy.Log())
	}
	idx := registrytest.ValidIndex(t, registrytest.Ref(t, e.reg.Host+"/team/app:v1.0.0"))
	if h, _ := idx.Digest(); h.String() != d {
		t.Errorf("digest %s, want %s", h, d)
	}
}

func TestRealPromoteRetries500(t *testing.T) {
	e := startReal(t)
	repo := e.proxy.Host + "/team/app"
	d := multiArch(t, e.reg.Host+"/team/app:1a2b3c4", "linux/amd64")
	e.proxy.Reset()
	e.proxy.Inject(registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest, Status: 500, Times: 2})
	if _, err := promote(t, repo+":1a2b3c4", repo, "v1.0.0", e.opt); err != nil {
		t.Fatalf("Promote: %v\n%s", err, e.proxy.Log())
	}
	if n := e.proxy.Count(http.MethodPut, registrytest.KindManifest); n != 3 {
		t.Errorf("%d PUTs, want 3 (two answered 500)\n%s", n, e.proxy.Log())
	}
	if clienttest.Head(t, e.reg.Host+"/team/app:v1.0.0") != d {
		t.Error("v1.0.0 does not point at the index")
	}
}

// TestRealPromoteRefusesAnotherCommit: on the real registry, the index a
// branch pushed under the commit tag (here: one built from another commit,
// as a rewritten tag would hold) is refused by digest, and nothing is
// written; the index built from the tagged commit is released.
func TestRealPromoteRefusesAnotherCommit(t *testing.T) {
	e := startReal(t)
	direct := e.reg.Host + "/team/app"
	repo := e.proxy.Host + "/team/app"
	commit := strings.Repeat("c3", 20)
	rewritten := multiArchOf(t, direct+":sha-"+commit, strings.Repeat("d4", 20), "linux/amd64", "linux/arm64")
	e.proxy.Reset()
	_, err := promote(t, repo+"@"+rewritten, repo, "v1.0.0", WithRules(Rules{Floating: true}), WithRevision(commit), e.opt)
	if !errors.Is(err, ociindex.ErrRevision) {
		t.Fatalf("err = %v, want ErrRevision", err)
	}
	if w := e.proxy.Writes(); len(w) != 0 {
		t.Errorf("the refused promotion wrote: %v", w)
	}
	built := multiArchOf(t, direct+":sha-"+commit, commit, "linux/amd64", "linux/arm64")
	rep := mustPromote(t, repo+"@"+built, repo, "v1.0.0", WithRules(Rules{Floating: true}), WithRevision(commit), e.opt)
	for _, tag := range []string{"v1.0.0", "v1.0", "v1", "latest"} {
		if got := clienttest.Head(t, direct+":"+tag); got != built {
			t.Errorf("%s = %s, want %s", tag, got, built)
		}
	}
	if rep.Digest != built {
		t.Errorf("released %s, want %s", rep.Digest, built)
	}
}
