package ociindex

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// realEnv is a real docker-registry with a counting proxy in front.
type realEnv struct {
	reg   *registrytest.Registry
	proxy *registrytest.Proxy
	opts  []Option
}

func startReal(t *testing.T) *realEnv {
	t.Helper()
	r := clienttest.Start(t)
	return &realEnv{reg: r.Registry, proxy: r.Proxy, opts: []Option{WithRemoteOptions(r.Remote...)}}
}

// seed pushes images straight to the registry (not through the proxy) and
// returns their references as seen through the proxy.
func (e *realEnv) seed(t *testing.T, repo string, imgs ...v1.Image) []string {
	t.Helper()
	var out []string
	for _, img := range imgs {
		ref := registrytest.Push(t, e.reg.Host+"/"+repo, img)
		out = append(out, e.proxy.Host+"/"+repo+"@"+ref.DigestStr())
	}
	return out
}

func (e *realEnv) sources(t *testing.T, refs ...string) []Source {
	t.Helper()
	var out []Source
	for _, r := range refs {
		out = append(out, src(t, r))
	}
	return out
}

func (e *realEnv) tag(t *testing.T, s string) name.Tag {
	return registrytest.Tag(t, e.proxy.Host+"/"+s)
}

func TestRealTwoArchesByDigest(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/arm64/v8")...)
	tag := e.tag(t, "team/app:abc123")
	e.proxy.Reset()

	res, err := Create(bg, []name.Tag{tag}, e.sources(t, refs[1]+"=linux/arm64", refs[0]+"=linux/amd64"), e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	// The minimum: per source one manifest read and one config read, no
	// blob upload, one manifest PUT; plus reading the tag first and one
	// ping, shared by the reads and the write (registryclient).
	want := map[string]int{"GET ping": 1, "HEAD manifest": 1, "GET manifest": 2, "GET blob": 2, "PUT manifest": 1}
	if diff := cmp.Diff(want, e.proxy.Counts()); diff != "" {
		t.Errorf("requests (-want +got):\n%s\n%s", diff, e.proxy.Log())
	}

	// Registry 2.8 serves the OCI index only to clients that accept it.
	idx := registrytest.ValidIndex(t, tag)
	got, _ := idx.Digest()
	if got != res.Digest() {
		t.Errorf("registry serves %s, Create said %s", got, res.Digest())
	}
	im, _ := idx.IndexManifest()
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64/v8"}, platformsOf(im)); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

func TestRealPlatformMismatchPushesNothing(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/amd64")...)
	tag := e.tag(t, "team/app:abc123")
	e.proxy.Reset()

	_, err := Create(bg, []name.Tag{tag}, e.sources(t, refs[0]+"=linux/amd64", refs[1]+"=linux/arm64"), e.opts...)
	if !errors.Is(err, ErrPlatformMismatch) || !strings.Contains(err.Error(), "declared linux/arm64") || !strings.Contains(err.Error(), "says linux/amd64") {
		t.Fatalf("err = %v, want ErrPlatformMismatch naming both platforms", err)
	}
	for _, r := range e.proxy.Writes() {
		t.Errorf("a write was attempted: %s", r)
	}
	if d := clienttest.Head(t, tag.String()); d != "" {
		t.Errorf("tag exists (%s)", d)
	}
}

func TestRealDuplicatePlatforms(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/amd64")...)
	tag := e.tag(t, "team/app:dup")
	_, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), e.opts...)
	if !errors.Is(err, ErrDuplicatePlatform) {
		t.Fatalf("err = %v, want ErrDuplicatePlatform", err)
	}
	res, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), append(e.opts, WithReplace(true))...)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Index.Children(); len(c) != 1 || c[0].Source.String() != refs[1] {
		t.Errorf("children = %v, want only %s", c, refs[1])
	}
}

func TestRealIndexSourceWithAttestation(t *testing.T) {
	e := startReal(t)
	imgs := registrytest.RandomImages(t, "linux/amd64", "linux/arm64")
	amd, arm := imgs[0], imgs[1]
	// A BuildKit-style index pushed straight to the registry.
	sourceIndex(t, e.reg.Host+"/team/app:buildx", true, amd, arm)
	ppc := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/ppc64le")...)
	tag := e.tag(t, "team/app:merged")

	res, err := Create(bg, []name.Tag{tag}, e.sources(t, e.proxy.Host+"/team/app:buildx", ppc[0]), e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	idx := registrytest.ValidIndex(t, tag)
	im, _ := idx.IndexManifest()
	want := []string{"linux/amd64", "linux/arm64", "linux/ppc64le",
		"attestation->" + digestOf(t, amd)[:15], "attestation->" + digestOf(t, arm)[:15]}
	if diff := cmp.Diff(want, platformsOf(im)); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if got, _ := idx.Digest(); got != res.Digest() {
		t.Errorf("digest %s, want %s", got, res.Digest())
	}
}

func TestRealDockerFormat(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", staticImage(t, registrytest.Platform(t, "linux/amd64"), "d-amd", false), staticImage(t, registrytest.Platform(t, "linux/arm64"), "d-arm", false))
	oci := e.seed(t, "team/app", staticImage(t, registrytest.Platform(t, "linux/arm64"), "c", true))
	tag := e.tag(t, "team/app:docker")
	res, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), append(e.opts, WithFormat(FormatDocker))...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(tag)
	if err != nil {
		t.Fatal(err)
	}
	if d.MediaType != types.DockerManifestList || d.Digest != res.Digest() {
		t.Errorf("registry serves %s %s, want a Docker manifest list %s", d.MediaType, d.Digest, res.Digest())
	}
	golden(t, "docker-list.json", d.Manifest)
	e.proxy.Reset()
	if _, err := Create(bg, []name.Tag{tag}, e.sources(t, refs[0], oci[0]), append(e.opts, WithFormat(FormatDocker))...); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
	if n := e.proxy.Count(http.MethodPut, ""); n != 0 {
		t.Errorf("%d PUTs after a refused OCI child", n)
	}
}

func TestRealCrossRepositoryMount(t *testing.T) {
	e := startReal(t)
	imgs := registrytest.RandomImages(t, "linux/amd64", "linux/arm64")
	refs := e.seed(t, "team/app-build", imgs...)
	tag := e.tag(t, "team/app:abc123")
	e.proxy.Reset()

	res, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Linked) != 2 {
		t.Errorf("linked = %v, want both children", res.Linked)
	}
	// Each image has two layers and a config: three blobs to mount.
	blobs := 0
	for _, img := range imgs {
		ls, _ := img.Layers()
		blobs += len(ls) + 1
	}
	counts := e.proxy.Counts()
	if counts["POST mount"] != blobs {
		t.Errorf("mounts = %d, want %d\n%s", counts["POST mount"], blobs, e.proxy.Log())
	}
	// No layer is downloaded: the only blob GETs are the two config reads.
	if counts["GET blob"] != 2 {
		t.Errorf("blob GETs = %d, want 2 (the configs)\n%s", counts["GET blob"], e.proxy.Log())
	}
	// No blob is uploaded: no upload session besides the mounts.
	if counts["PATCH upload"]+counts["PUT upload"]+counts["POST upload"] != 0 {
		t.Errorf("blobs were uploaded:\n%s", e.proxy.Log())
	}
	// Two child manifests by digest, then the index.
	if counts["PUT manifest"] != 3 {
		t.Errorf("manifest PUTs = %d, want 3\n%s", counts["PUT manifest"], e.proxy.Log())
	}
	registrytest.ValidIndex(t, tag)
}

func TestRealIdempotentRerun(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/arm64")...)
	tags := []name.Tag{e.tag(t, "team/app:abc123"), e.tag(t, "team/app:main")}
	first, err := Create(bg, tags, e.sources(t, refs...), e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy.Reset()
	second, err := Create(bg, tags, e.sources(t, refs...), e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	if second.Digest() != first.Digest() {
		t.Fatalf("digest changed: %s then %s", first.Digest(), second.Digest())
	}
	for _, tr := range second.Tags {
		if tr.Updated {
			t.Errorf("%s updated on a re-run", tr.Tag)
		}
	}
	// Reads only: the two tags and the sources. The registry's ping answer
	// is shared by everything made with the same registryclient options,
	// the first run included.
	want := map[string]int{"HEAD manifest": 2, "GET manifest": 2, "GET blob": 2}
	if diff := cmp.Diff(want, e.proxy.Counts()); diff != "" {
		t.Errorf("requests (-want +got):\n%s\n%s", diff, e.proxy.Log())
	}
}

func TestRealRetriesTransientFailures(t *testing.T) {
	tests := []struct {
		name  string
		fault registrytest.Fault
	}{
		{name: "index PUT answered 500 twice", fault: registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest, Status: 500, Times: 2}},
		{name: "manifest GET answered 429", fault: registrytest.Fault{Method: http.MethodGet, Kind: registrytest.KindManifest, Status: 429, RetryAfter: "0", Times: 1}},
		{name: "config GET answered 503 twice", fault: registrytest.Fault{Method: http.MethodGet, Kind: registrytest.KindBlob, Status: 503, Times: 2}},
		{name: "connection dropped on the tag HEAD", fault: registrytest.Fault{Method: http.MethodHead, Kind: registrytest.KindManifest, Drop: true, Times: 1}},
		{name: "connection dropped on the index PUT", fault: registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest, Drop: true, Times: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startReal(t)
			refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/arm64")...)
			tag := e.tag(t, "team/app:abc123")
			e.proxy.Reset()
			e.proxy.Inject(tt.fault)
			res, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), e.opts...)
			if err != nil {
				t.Fatalf("Create: %v\n%s", err, e.proxy.Log())
			}
			if injected := e.proxy.Injected(); injected != tt.fault.Times {
				t.Errorf("%d faults injected, want %d\n%s", injected, tt.fault.Times, e.proxy.Log())
			}
			if got := clienttest.Head(t, tag.String()); got != res.Digest().String() {
				t.Errorf("tag points at %q, want %s", got, res.Digest())
			}
		})
	}
}

func TestRealPersistentFailureLeavesNoIndex(t *testing.T) {
	e := startReal(t)
	imgs := registrytest.RandomImages(t, "linux/amd64", "linux/arm64")
	refs := e.seed(t, "team/app-build", imgs...)
	tag := e.tag(t, "team/app:abc123")
	e.proxy.Reset()
	// Linking the second child into team/app fails for good: the index must
	// not be pushed.
	e.proxy.Inject(registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest,
		PathContains: digestOf(t, imgs[1]), Status: 500, Times: 100})
	_, err := Create(bg, []name.Tag{tag}, e.sources(t, refs...), e.opts...)
	if err == nil || !strings.Contains(err.Error(), "linking") {
		t.Fatalf("err = %v, want a linking failure", err)
	}
	for _, r := range e.proxy.Requests() {
		if r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/manifests/abc123") {
			t.Errorf("the index was PUT although a child is missing: %s", r)
		}
	}
}

// TestRealPartialTagFailureRerunConverges: tags are PUT one by one, so a
// registry that fails for good on the second tag leaves the first tag on
// the new index and the second where it was; running the same merge again
// gives the same digest, leaves the first tag alone and writes only the
// second.
func TestRealPartialTagFailureRerunConverges(t *testing.T) {
	e := startReal(t)
	refs := e.seed(t, "team/app", registrytest.RandomImages(t, "linux/amd64", "linux/arm64")...)
	first, second := e.tag(t, "team/app:sha-abc"), e.tag(t, "team/app:branch-main")
	e.proxy.Reset()
	e.proxy.Inject(registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest,
		PathContains: "/manifests/branch-main", Status: 500, Times: 100})
	_, err := Create(bg, []name.Tag{first, second}, e.sources(t, refs...), e.opts...)
	if err == nil || !strings.Contains(err.Error(), "branch-main") {
		t.Fatalf("err = %v, want a failure pushing branch-main", err)
	}
	pushed := clienttest.Head(t, first.String())
	if pushed == "" {
		t.Fatal("the first tag was not written before the failure")
	}
	if got := clienttest.Head(t, second.String()); got != "" {
		t.Fatalf("branch-main = %s after its PUT failed", got)
	}

	e.proxy = registrytest.NewProxy(t, e.reg) // the registry recovered
	res, err := Create(bg, []name.Tag{e.tag(t, "team/app:sha-abc"), e.tag(t, "team/app:branch-main")}, e.sources(t, refs...), e.opts...)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if res.Digest().String() != pushed {
		t.Errorf("rerun built %s, the first run %s", res.Digest(), pushed)
	}
	for _, tr := range res.Tags {
		if wantUpdated := tr.Tag.TagStr() == "branch-main"; tr.Updated != wantUpdated {
			t.Errorf("rerun: %s updated = %v, want %v", tr.Tag, tr.Updated, wantUpdated)
		}
		if got := clienttest.Head(t, tr.Tag.String()); got != pushed {
			t.Errorf("after the rerun %s = %s, want %s", tr.Tag, got, pushed)
		}
	}
	if n := e.proxy.Count(http.MethodPut, registrytest.KindManifest); n != 1 {
		t.Errorf("the rerun PUT %d manifests, want only the missing tag\n%s", n, e.proxy.Log())
	}
}
