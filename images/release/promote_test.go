package release

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var bg = context.Background()

// multiArch pushes an index of random images for platforms to ref (a tag)
// and returns its digest.
func multiArch(t testing.TB, ref string, platforms ...string) string {
	t.Helper()
	return multiArchOf(t, ref, "", platforms...)
}

// multiArchOf is multiArch with the index annotated as built from the
// commit revision ("" adds no annotation).
func multiArchOf(t testing.TB, ref, revision string, platforms ...string) string {
	t.Helper()
	idx := registrytest.IndexOf(t, registrytest.RandomImages(t, platforms...)...)
	if revision != "" {
		idx = mutate.Annotations(idx, map[string]string{ociindex.AnnotationRevision: revision}).(v1.ImageIndex)
	}
	return registrytest.Push(t, ref, idx).DigestStr()
}

// promote is Promote of the index from names (by tag or digest) to repo as
// version, each parsed or the test failed.
func promote(t testing.TB, from, repo, version string, opts ...Option) (*Report, error) {
	t.Helper()
	return Promote(bg, registrytest.Ref(t, from), registrytest.Repo(t, repo), mustParse(t, version), opts...)
}

// mustPromote is promote that fails the test on an error.
func mustPromote(t testing.TB, from, repo, version string, opts ...Option) *Report {
	t.Helper()
	rep, err := promote(t, from, repo, version, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// actions summarises a report as tag -> action.
func actions(r *Report) map[string]Action {
	m := map[string]Action{}
	for _, t := range r.Tags {
		m[t.Tag] = t.Action
	}
	return m
}

func TestPromote(t *testing.T) {
	repo := registrytest.Memory(t) + "/team/app"
	d142 := multiArch(t, repo+":1a2b3c4", "linux/amd64", "linux/arm64")
	floating := WithRules(Rules{Floating: true})

	rep := mustPromote(t, repo+":1a2b3c4", repo, "v1.4.2", floating, WithRequirePlatforms(v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}))
	want := map[string]Action{"v1.4.2": ActionCreate, "v1.4": ActionCreate, "v1": ActionCreate, "latest": ActionCreate}
	if diff := cmp.Diff(want, actions(rep)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if rep.Digest != d142 || rep.Source != repo+"@"+d142 || rep.Linked {
		t.Errorf("report header = %+v", rep)
	}
	for _, tag := range []string{"v1.4.2", "v1.4", "v1", "latest"} {
		if got := clienttest.Head(t, repo+":"+tag); got != d142 {
			t.Errorf("%s points at %q, want %s", tag, got, d142)
		}
	}

	// Re-running the release is a no-op.
	rep = mustPromote(t, repo+"@"+d142, repo, "v1.4.2", floating)
	if len(rep.Changed()) != 0 {
		t.Errorf("re-run changed %v", rep.Changed())
	}
	if diff := cmp.Diff([]string{"v1.4.2", "v1.4", "v1", "latest"}, rep.Current()); diff != "" {
		t.Errorf("Current (-want +got):\n%s", diff)
	}

	// A backport moves only its minor tag.
	d139 := multiArch(t, repo+":9f8e7d6", "linux/amd64", "linux/arm64")
	rep = mustPromote(t, repo+":9f8e7d6", repo, "v1.3.9", floating)
	want = map[string]Action{"v1.3.9": ActionCreate, "v1.3": ActionCreate, "v1": ActionKeep, "latest": ActionKeep}
	if diff := cmp.Diff(want, actions(rep)); diff != "" {
		t.Errorf("backport actions (-want +got):\n%s", diff)
	}
	if clienttest.Head(t, repo+":v1") != d142 || clienttest.Head(t, repo+":latest") != d142 || clienttest.Head(t, repo+":v1.3") != d139 {
		t.Error("the backport moved the wrong tags")
	}
	for _, tr := range rep.Tags {
		if tr.Action == ActionKeep && (tr.Old != d142 || tr.New != "") {
			t.Errorf("kept tag %+v: want old %s and no new digest", tr, d142)
		}
	}

	// A patch release moves every floating tag.
	d143 := multiArch(t, repo+":5e6f7a8", "linux/amd64", "linux/arm64")
	rep = mustPromote(t, repo+":5e6f7a8", repo, "v1.4.3", floating)
	want = map[string]Action{"v1.4.3": ActionCreate, "v1.4": ActionMove, "v1": ActionMove, "latest": ActionMove}
	if diff := cmp.Diff(want, actions(rep)); diff != "" {
		t.Errorf("patch actions (-want +got):\n%s", diff)
	}
	if clienttest.Head(t, repo+":latest") != d143 {
		t.Error("latest did not move to v1.4.3")
	}
}

func TestPromoteRefusals(t *testing.T) {
	repo := registrytest.Memory(t) + "/team/app"
	good := multiArch(t, repo+":good", "linux/amd64", "linux/arm64")
	other := multiArch(t, repo+":other", "linux/amd64", "linux/arm64")
	multiArch(t, repo+":amdonly", "linux/amd64")
	registrytest.Push(t, repo+":single", registrytest.RandomImages(t, "linux/amd64")[0])
	mustPromote(t, repo+":good", repo, "v1.0.0")
	if err := remote.Tag(registrytest.Ref(t, repo+":other").Context().Tag("2.0.0"), mustGet(t, repo+":other")); err != nil {
		t.Fatal(err)
	}
	armRequired := WithRequirePlatforms(v1.Platform{OS: "linux", Architecture: "arm64"})

	tests := []struct {
		name    string
		from    string
		version string
		opts    []Option
		wantErr error
		want    string
	}{
		{name: "single image", from: repo + ":single", version: "v9.0.0", wantErr: ociindex.ErrNotIndex, want: "single image"},
		{name: "missing platform", from: repo + ":amdonly", version: "v9.0.0", opts: []Option{armRequired}, wantErr: ociindex.ErrMissingPlatform, want: "linux/arm64"},
		{name: "immutable exact tag", from: repo + ":other", version: "v1.0.0", wantErr: ErrImmutable, want: "v1.0.0 already points at " + good},
		{name: "immutable under another spelling", from: repo + ":good", version: "v2.0.0", wantErr: ErrImmutable, want: "2.0.0 already points at " + other},
		{name: "missing source", from: repo + ":nope", version: "v9.0.0", want: "reading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := clienttest.Head(t, repo+":v9.0.0")
			_, err := promote(t, tt.from, repo, tt.version, tt.opts...)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.want)
			}
			if clienttest.Head(t, repo+":v9.0.0") != before {
				t.Error("a refused promotion wrote a tag")
			}
		})
	}
	if clienttest.Head(t, repo+":v1.0.0") != good {
		t.Fatal("a refused promotion moved v1.0.0")
	}

	// --force overrides immutability.
	rep := mustPromote(t, repo+":other", repo, "v1.0.0", WithForce(true))
	if rep.Tags[0].Action != ActionMove || rep.Tags[0].Old != good || clienttest.Head(t, repo+":v1.0.0") != other {
		t.Errorf("forced promotion: %+v", rep.Tags[0])
	}
}

func mustGet(t testing.TB, s string) *remote.Descriptor {
	t.Helper()
	d, err := remote.Get(registrytest.Ref(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPromoteDryRun(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	d1 := multiArch(t, repo+":a", "linux/amd64")
	mustPromote(t, repo+":a", repo, "1.0.0", WithRules(Rules{Floating: true}))
	multiArch(t, repo+":b", "linux/amd64")
	rep := mustPromote(t, repo+":b", repo, "1.1.0", WithRules(Rules{Floating: true}), WithDryRun(true))
	want := map[string]Action{"1.1.0": ActionCreate, "1.1": ActionCreate, "1": ActionMove, "latest": ActionMove}
	if diff := cmp.Diff(want, actions(rep)); diff != "" {
		t.Errorf("dry-run actions (-want +got):\n%s", diff)
	}
	if !rep.DryRun || clienttest.Head(t, repo+":1.1.0") != "" || clienttest.Head(t, repo+":latest") != d1 {
		t.Error("a dry run changed the repository")
	}
}

func TestPromoteAcrossRepositories(t *testing.T) {
	host := registrytest.Memory(t)
	d := multiArch(t, host+"/team/app-ci:1a2b3c4", "linux/amd64", "linux/arm64")
	rep := mustPromote(t, host+"/team/app-ci:1a2b3c4", host+"/team/app", "v1.0.0")
	if !rep.Linked || clienttest.Head(t, host+"/team/app:v1.0.0") != d {
		t.Errorf("report %+v; v1.0.0 -> %s, want %s", rep, clienttest.Head(t, host+"/team/app:v1.0.0"), d)
	}
	idx, err := remote.Index(registrytest.Ref(t, host+"/team/app:v1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		if clienttest.Head(t, host+"/team/app@"+m.Digest.String()) == "" {
			t.Errorf("child %s is missing from the target repository", m.Digest)
		}
	}
}

func TestPromoteOptionsValidate(t *testing.T) {
	for _, opt := range []Option{
		WithRules(Rules{Latest: "maybe"}),
		WithRequirePlatforms(v1.Platform{Architecture: "amd64"}),
		WithLogger(nil),
	} {
		if _, err := promote(t, "reg.invalid/app:x", "reg.invalid/app", "v1.0.0", opt); err == nil {
			t.Error("an invalid option was accepted")
		}
	}
}

func TestPromoteRevision(t *testing.T) {
	repo := registrytest.Memory(t) + "/team/app"
	commit := strings.Repeat("a1", 20)
	other := strings.Repeat("b2", 20)
	built := multiArchOf(t, repo+":sha-"+commit, commit, "linux/amd64", "linux/arm64")
	wrong := multiArchOf(t, repo+":wrong", other, "linux/amd64", "linux/arm64")
	bare := multiArch(t, repo+":bare", "linux/amd64", "linux/arm64")
	short := multiArchOf(t, repo+":short", commit[:8], "linux/amd64", "linux/arm64")

	tests := []struct {
		name, from, want string
	}{
		{name: "built from another commit", from: repo + "@" + wrong, want: `is "` + other + `", not the commit ` + commit},
		{name: "no revision annotation", from: repo + "@" + bare, want: "has no org.opencontainers.image.revision annotation"},
		{name: "abbreviated revision", from: repo + "@" + short, want: `is "` + commit[:8] + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := promote(t, tt.from, repo, "v1.0.0", WithRevision(commit))
			if !errors.Is(err, ociindex.ErrRevision) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrRevision containing %q", err, tt.want)
			}
			if clienttest.Head(t, repo+":v1.0.0") != "" {
				t.Fatal("a refused promotion wrote v1.0.0")
			}
		})
	}
	rep := mustPromote(t, repo+"@"+built, repo, "v1.0.0", WithRevision(commit))
	if rep.Digest != built || clienttest.Head(t, repo+":v1.0.0") != built {
		t.Errorf("released %s (v1.0.0 at %s), want %s", rep.Digest, clienttest.Head(t, repo+":v1.0.0"), built)
	}
	for _, bad := range []string{commit[:12], strings.ToUpper(commit), "sha-" + commit, commit + "\n"} {
		if _, err := promote(t, repo+"@"+built, repo, "v1.0.1", WithRevision(bad)); err == nil ||
			!strings.Contains(err.Error(), "not a full commit SHA") {
			t.Errorf("WithRevision(%q): err = %v, want a refusal", bad, err)
		}
	}
}
