package ociindex

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ciel-ci/ciel/images/platform"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// platformsOf lists the platforms of an index's entries, in order.
func platformsOf(im *v1.IndexManifest) []string {
	var out []string
	for _, m := range im.Manifests {
		s := m.Platform.String()
		if IsAttestation(m) {
			s = "attestation->" + m.Annotations[AnnotationReferenceDigest][:15]
		}
		out = append(out, s)
	}
	return out
}

func TestCreateTwoArchesByDigest(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := pushRandom(t, repo, "linux/amd64")
	arm := pushRandom(t, repo, "linux/arm64/v8")
	tag := registrytest.Tag(t, repo+":abc123")

	// The arm64 build comes first on the command line; the index is still
	// ordered by platform.
	res, err := Create(bg, []name.Tag{tag}, []Source{src(t, arm.String()+"=linux/arm64"), src(t, amd.String())})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := clienttest.Head(t, tag.String()), res.Digest().String(); got != want {
		t.Fatalf("tag points at %s, Create said %s", got, want)
	}
	idx := registrytest.ValidIndex(t, tag)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64/v8"}, platformsOf(im)); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("media type = %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	want := []TagResult{{Tag: tag, Previous: "", Updated: true}}
	if diff := cmp.Diff(want, res.Tags, cmp.Comparer(func(a, b name.Tag) bool { return a.String() == b.String() })); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if len(res.Linked) != 0 {
		t.Errorf("linked %v, want nothing (same repository)", res.Linked)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	var refs []string
	for _, p := range []string{"linux/s390x", "linux/arm/v7", "linux/amd64", "linux/arm64/v8", "windows/amd64:10.0.17763.1879", "linux/arm/v6"} {
		refs = append(refs, registrytest.Push(t, repo, staticImage(t, registrytest.Platform(t, p), p, true)).String())
	}
	var digests []string
	var raw []byte
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {2, 0, 5, 1, 3, 4}} {
		var sources []Source
		for _, i := range order {
			sources = append(sources, src(t, refs[i]))
		}
		ix, err := Build(bg, sources, WithAnnotations(map[string]string{"org.opencontainers.image.revision": "0123abc"}))
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, digestOf(t, ix))
		raw, _ = ix.RawManifest()
		if diff := cmp.Diff([]string{"linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8", "linux/s390x", "windows/amd64:10.0.17763.1879"}, platformsOf(ix.Manifest())); diff != "" {
			t.Errorf("order %v: platforms (-want +got):\n%s", order, diff)
		}
	}
	if digests[0] != digests[1] || digests[0] != digests[2] {
		t.Errorf("digests differ by source order: %v", digests)
	}
	golden(t, "six-platforms.json", raw)
}

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestDeclaredPlatformMismatchPushesNothing(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := pushRandom(t, repo, "linux/amd64")
	wrong := pushRandom(t, repo, "linux/amd64") // the "arm64" build ran on an amd64 node
	tag := registrytest.Tag(t, repo+":abc123")

	_, err := Create(bg, []name.Tag{tag}, []Source{src(t, amd.String()+"=linux/amd64"), src(t, wrong.String()+"=linux/arm64")})
	if !errors.Is(err, ErrPlatformMismatch) {
		t.Fatalf("err = %v, want ErrPlatformMismatch", err)
	}
	for _, s := range []string{"declared linux/arm64", "config says linux/amd64", wrong.DigestStr()} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if got := clienttest.Head(t, tag.String()); got != "" {
		t.Errorf("tag was pushed (%s) despite the mismatch", got)
	}
}

func TestDuplicatePlatforms(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	a1 := pushRandom(t, repo, "linux/amd64")
	a2 := pushRandom(t, repo, "linux/amd64")
	arm := pushRandom(t, repo, "linux/arm64")
	armV8 := pushRandom(t, repo, "linux/arm64/v8")

	tests := []struct {
		name    string
		sources []string
		replace bool
		wantErr error
		want    []string // digests in index order
	}{
		{name: "two amd64", sources: []string{a1.String(), a2.String(), arm.String()}, wantErr: ErrDuplicatePlatform},
		{name: "arm64 and arm64/v8 are one platform", sources: []string{arm.String(), armV8.String()}, wantErr: ErrDuplicatePlatform},
		{name: "replace keeps the later", sources: []string{a1.String(), arm.String(), a2.String()}, replace: true,
			want: []string{a2.DigestStr(), arm.DigestStr()}},
		{name: "the same manifest twice is fine", sources: []string{a1.String(), arm.String(), a1.String()},
			want: []string{a1.DigestStr(), arm.DigestStr()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sources []Source
			for _, s := range tt.sources {
				sources = append(sources, src(t, s))
			}
			ix, err := Build(bg, sources, WithReplace(tt.replace))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ix.Manifest().Manifests {
				got = append(got, m.Digest.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("manifests (-want +got):\n%s", diff)
			}
			if tt.replace {
				if r := ix.Replaced(); len(r) != 1 || r[0].Descriptor.Digest.String() != a1.DigestStr() {
					t.Errorf("Replaced() = %v, want the first amd64 image", r)
				}
			}
		})
	}
}

func TestIndexSourceWithAttestations(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	imgs := registrytest.RandomImages(t, "linux/amd64", "linux/arm64")
	amd, arm := imgs[0], imgs[1]
	sourceIndex(t, repo+":buildx", true, arm, amd)
	ppc := pushRandom(t, repo, "linux/ppc64le")
	amdDigest, armDigest := digestOf(t, amd), digestOf(t, arm)

	t.Run("flattened, attestations kept", func(t *testing.T) {
		tag := registrytest.Tag(t, repo+":merged")
		res, err := Create(bg, []name.Tag{tag}, []Source{src(t, repo+":buildx"), src(t, ppc.String())})
		if err != nil {
			t.Fatal(err)
		}
		registrytest.ValidIndex(t, tag)
		im := res.Index.Manifest()
		want := []string{"linux/amd64", "linux/arm64", "linux/ppc64le", "attestation->" + amdDigest[:15], "attestation->" + armDigest[:15]}
		if diff := cmp.Diff(want, platformsOf(im)); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		for _, m := range im.Manifests[3:] {
			if m.Annotations[AnnotationReferenceType] != "attestation-manifest" || m.Platform.String() != "unknown/unknown" {
				t.Errorf("attestation entry lost its annotations or platform: %+v", m)
			}
		}
	})
	t.Run("declared platform selects from the index", func(t *testing.T) {
		ix, err := Build(bg, []Source{src(t, repo+":buildx=linux/arm64/v8")})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"linux/arm64", "attestation->" + armDigest[:15]}, platformsOf(ix.Manifest())); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
	})
	t.Run("declared platform absent from the index", func(t *testing.T) {
		_, err := Build(bg, []Source{src(t, repo+":buildx=linux/s390x")})
		if !errors.Is(err, ErrPlatformMismatch) {
			t.Fatalf("err = %v, want ErrPlatformMismatch", err)
		}
	})
	t.Run("attestation of a replaced image is dropped", func(t *testing.T) {
		newAmd := pushRandom(t, repo, "linux/amd64")
		ix, err := Build(bg, []Source{src(t, repo+":buildx"), src(t, newAmd.String())}, WithReplace(true))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"linux/amd64", "linux/arm64", "attestation->" + armDigest[:15]}
		if diff := cmp.Diff(want, platformsOf(ix.Manifest())); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if d := ix.Dropped(); len(d) != 1 || d[0].Subject.String() != amdDigest {
			t.Errorf("Dropped() = %v, want the attestation of the replaced amd64 image", d)
		}
	})
}

func TestIndexListsWrongPlatform(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := registrytest.RandomImages(t, "linux/amd64")[0]
	// An index that claims the amd64 image is arm64.
	idx := sourceIndex(t, repo+":liar", false, amd)
	im, _ := idx.IndexManifest()
	if im.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatal("fixture: unexpected platform")
	}
	bad := []byte(strings.Replace(string(mustRaw(t, idx)), `"architecture":"amd64"`, `"architecture":"arm64"`, 1))
	if err := remote.Put(registrytest.Tag(t, repo+":liar"), rawIndex(bad)); err != nil {
		t.Fatal(err)
	}
	_, err := Build(bg, []Source{src(t, repo+":liar")})
	if !errors.Is(err, ErrPlatformMismatch) || !strings.Contains(err.Error(), "lists") {
		t.Fatalf("err = %v, want ErrPlatformMismatch naming the index's claim", err)
	}
}

type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

func mustRaw(t testing.TB, m interface{ RawManifest() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDockerFormat(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	dAmd := registrytest.Push(t, repo, staticImage(t, registrytest.Platform(t, "linux/amd64"), "d-amd", false))
	dArm := registrytest.Push(t, repo, staticImage(t, registrytest.Platform(t, "linux/arm64"), "d-arm", false))
	oArm := registrytest.Push(t, repo, staticImage(t, registrytest.Platform(t, "linux/arm64"), "o-arm", true))

	t.Run("docker children", func(t *testing.T) {
		tag := registrytest.Tag(t, repo+":docker")
		res, err := Create(bg, []name.Tag{tag}, []Source{src(t, dAmd.String()), src(t, dArm.String())}, WithFormat(FormatDocker))
		if err != nil {
			t.Fatal(err)
		}
		idx := registrytest.ValidIndex(t, tag)
		mt, _ := idx.MediaType()
		if mt != types.DockerManifestList {
			t.Errorf("media type = %s, want %s", mt, types.DockerManifestList)
		}
		golden(t, "docker-list.json", mustRaw(t, res.Index))
	})
	t.Run("an OCI child is refused, not converted", func(t *testing.T) {
		_, err := Build(bg, []Source{src(t, dAmd.String()), src(t, oArm.String())}, WithFormat(FormatDocker))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), oArm.DigestStr()) {
			t.Fatalf("err = %v, want ErrFormat naming %s", err, oArm.DigestStr())
		}
	})
	t.Run("annotations are refused", func(t *testing.T) {
		_, err := Build(bg, []Source{src(t, dAmd.String())}, WithFormat(FormatDocker), WithAnnotations(map[string]string{"a": "b"}))
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("err = %v, want ErrFormat", err)
		}
	})
	t.Run("OCI index with Docker children", func(t *testing.T) {
		ix, err := Build(bg, []Source{src(t, dAmd.String()), src(t, oArm.String())})
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := ix.MediaType(); mt != types.OCIImageIndex {
			t.Errorf("media type = %s", mt)
		}
	})
}

func TestRequirePlatforms(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := pushRandom(t, repo, "linux/amd64")
	armV7 := pushRandom(t, repo, "linux/arm/v7")
	tests := []struct {
		require string
		wantErr bool
	}{
		{require: "linux/amd64", wantErr: false},
		{require: "linux/amd64,linux/arm", wantErr: false},
		{require: "linux/arm/v7", wantErr: false},
		{require: "linux/arm/v6", wantErr: true},
		{require: "linux/amd64,linux/arm64", wantErr: true},
		{require: "windows/amd64", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.require, func(t *testing.T) {
			ps, err := platform.ParseExactList(tt.require)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Build(bg, []Source{src(t, amd.String()), src(t, armV7.String())}, WithRequirePlatforms(ps...))
			if tt.wantErr != errors.Is(err, ErrMissingPlatform) {
				t.Fatalf("err = %v, want ErrMissingPlatform: %v", err, tt.wantErr)
			}
		})
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	amd := pushRandom(t, repo, "linux/amd64")
	arm := pushRandom(t, repo, "linux/arm64")
	tags := []name.Tag{registrytest.Tag(t, repo+":abc123"), registrytest.Tag(t, repo+":main")}
	sources := []Source{src(t, amd.String()), src(t, arm.String())}
	first, err := Create(bg, tags, sources)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Create(bg, tags, sources)
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest() != second.Digest() {
		t.Fatalf("digests differ: %s then %s", first.Digest(), second.Digest())
	}
	for _, tr := range second.Tags {
		if tr.Updated || tr.Previous != first.Digest().String() {
			t.Errorf("second run: %s updated=%v previous=%s, want unchanged", tr.Tag, tr.Updated, tr.Previous)
		}
	}
	// Moving one tag elsewhere makes only that one change.
	other := pushRandom(t, repo, "linux/riscv64")
	if err := remote.Tag(tags[1], mustDesc(t, other)); err != nil {
		t.Fatal(err)
	}
	third, err := Create(bg, tags, sources)
	if err != nil {
		t.Fatal(err)
	}
	if third.Tags[0].Updated || !third.Tags[1].Updated || third.Tags[1].Previous != other.DigestStr() {
		t.Errorf("third run tags = %+v, want only %s updated from %s", third.Tags, tags[1], other.DigestStr())
	}
}

func mustDesc(t testing.TB, ref name.Reference) *remote.Descriptor {
	t.Helper()
	d, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSourceErrors(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	noPlatform := registrytest.RandomImage(t, v1.Platform{})
	np := registrytest.Push(t, repo, noPlatform)
	amd := registrytest.RandomImages(t, "linux/amd64")[0]
	nested := sourceIndex(t, repo+":inner", false, amd)
	outer := registrytest.Tag(t, repo+":outer")
	if err := remote.WriteIndex(outer, mutateIndexOf(t, nested)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		source  string
		wantErr error
		want    string
	}{
		{name: "missing image", source: repo + ":nope", want: "reading " + repo + ":nope"},
		{name: "config without platform", source: np.String(), wantErr: ErrUnsupported, want: "no os and architecture"},
		{name: "nested index", source: outer.String(), wantErr: ErrUnsupported, want: "nested index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(bg, []Source{src(t, tt.source)})
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.want)
			}
		})
	}
	if _, err := Build(bg, nil); err == nil {
		t.Error("Build with no sources succeeded")
	}
	if _, err := Create(bg, nil, []Source{src(t, np.String())}); err == nil {
		t.Error("Create with no tags succeeded")
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want string // the error says this
	}{
		{"format", []Option{WithFormat("zip")}, `unknown index format "zip"`},
		{"jobs", []Option{WithJobs(0)}, "jobs must be at least 1"},
		{"logger", []Option{WithLogger(nil)}, "logger"},
		{"annotation key", []Option{WithAnnotations(map[string]string{" ": "x"})}, "annotation keys"},
		{"required platform", []Option{WithRequirePlatforms(v1.Platform{OS: "linux"})}, "needs an os and an architecture"},
		{"docker format with annotations", []Option{WithAnnotations(map[string]string{"a": "b"}), WithFormat(FormatDocker)}, "cannot carry annotations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := makeOptions(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("makeOptions = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	imgs := registrytest.RandomImages(t, "linux/amd64", "linux/arm64/v8")
	amd, arm := imgs[0], imgs[1]
	idx := sourceIndex(t, repo+":multi", true, amd, arm)
	s, err := Inspect(bg, registrytest.Tag(t, repo+":multi"))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if s.Digest != digestOf(t, idx) || s.Reference != repo+"@"+digestOf(t, idx) || s.MediaType != types.OCIImageIndex {
		t.Errorf("summary header = %+v", s)
	}
	var got []Entry
	for _, e := range s.Manifests {
		e.PlatformDetail, e.Annotations = nil, nil
		got = append(got, e)
	}
	want := []Entry{
		{Platform: "linux/amd64", Digest: digestOf(t, amd), MediaType: types.DockerManifestSchema2, Size: im.Manifests[0].Size},
		{Platform: "linux/arm64/v8", Digest: digestOf(t, arm), MediaType: types.DockerManifestSchema2, Size: im.Manifests[1].Size},
		{Platform: "unknown/unknown", Digest: im.Manifests[2].Digest.String(), MediaType: types.OCIManifestSchema1, Size: im.Manifests[2].Size, AttestationFor: digestOf(t, amd)},
		{Platform: "unknown/unknown", Digest: im.Manifests[3].Digest.String(), MediaType: types.OCIManifestSchema1, Size: im.Manifests[3].Size, AttestationFor: digestOf(t, arm)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	single := registrytest.Push(t, repo, amd)
	if _, err := Inspect(bg, single); !errors.Is(err, ErrNotIndex) {
		t.Errorf("Inspect(image) err = %v, want ErrNotIndex", err)
	}
}

func TestCreateAcrossRegistries(t *testing.T) {
	from, dst := registrytest.Memory(t), registrytest.Memory(t)
	amd := pushRandom(t, from+"/app", "linux/amd64")
	arm := pushRandom(t, from+"/app", "linux/arm64")
	tag := registrytest.Tag(t, dst+"/mirror/app:v1")
	res, err := Create(bg, []name.Tag{tag}, []Source{src(t, amd.String()), src(t, arm.String())})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Linked) != 2 {
		t.Errorf("linked = %v, want both children copied", res.Linked)
	}
	registrytest.ValidIndex(t, tag)
}
