package release

import (
	"errors"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/internal/semver"
	"github.com/google/go-cmp/cmp"
)

// moves summarises a plan as tag -> moved?, for compact expectations.
func moves(p Plan) map[string]bool {
	m := map[string]bool{}
	for _, t := range p.Tags {
		m[t.Tag] = t.Move
	}
	return m
}

func mustParse(t testing.TB, s string) semver.Version {
	t.Helper()
	v, err := semver.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPlanTags(t *testing.T) {
	floating := Rules{Floating: true}
	tests := []struct {
		name     string
		version  string
		existing []string
		rules    Rules
		want     map[string]bool
	}{
		// The exact tag alone.
		{name: "exact only by default", version: "v1.4.2", want: map[string]bool{"v1.4.2": true}},
		{name: "exact keeps an unprefixed spelling", version: "1.4.2", want: map[string]bool{"1.4.2": true}},
		{name: "exact with build metadata", version: "v2.0.0-rc.1+build.5", want: map[string]bool{"v2.0.0-rc.1_build.5": true}},
		{name: "build metadata dropped", version: "v1.0.0+build.5", rules: Rules{BuildMetadata: BuildMetadataDrop}, want: map[string]bool{"v1.0.0": true}},
		{name: "prefix forced", version: "1.4.2", rules: Rules{Prefix: PrefixV, Floating: true}, want: map[string]bool{"v1.4.2": true, "v1.4": true, "v1": true, "latest": true}},
		{name: "prefix removed", version: "v1.4.2", rules: Rules{Prefix: PrefixNone, Floating: true}, want: map[string]bool{"1.4.2": true, "1.4": true, "1": true, "latest": true}},

		// Floating in an empty or growing repository.
		{name: "first release", version: "v1.0.0", rules: floating, want: map[string]bool{"v1.0.0": true, "v1.0": true, "v1": true, "latest": true}},
		{name: "non-semver tags are ignored", version: "v1.0.0", existing: []string{"latest", "main", "abc1234", "v1.4", "v1", "1.2", "v01.2.3"}, rules: floating,
			want: map[string]bool{"v1.0.0": true, "v1.0": true, "v1": true, "latest": true}},
		{name: "next patch", version: "v1.4.3", existing: []string{"v1.4.2", "v1.4", "v1", "latest"}, rules: floating,
			want: map[string]bool{"v1.4.3": true, "v1.4": true, "v1": true, "latest": true}},
		{name: "next minor", version: "v1.5.0", existing: []string{"v1.4.2", "v1.3.9"}, rules: floating,
			want: map[string]bool{"v1.5.0": true, "v1.5": true, "v1": true, "latest": true}},
		{name: "next major", version: "v2.0.0", existing: []string{"v1.4.2"}, rules: floating,
			want: map[string]bool{"v2.0.0": true, "v2.0": true, "v2": true, "latest": true}},

		// Backports: only the ranges where the version is the highest.
		{name: "backport moves only its minor", version: "v1.3.9", existing: []string{"v1.4.2", "v1.3.8"}, rules: floating,
			want: map[string]bool{"v1.3.9": true, "v1.3": true, "v1": false, "latest": false}},
		{name: "backport to an old major", version: "v1.4.3", existing: []string{"v1.4.2", "v2.1.0"}, rules: floating,
			want: map[string]bool{"v1.4.3": true, "v1.4": true, "v1": true, "latest": false}},
		{name: "backport below the minor's head", version: "v1.4.1", existing: []string{"v1.4.2"}, rules: floating,
			want: map[string]bool{"v1.4.1": true, "v1.4": false, "v1": false, "latest": false}},
		{name: "late first patch of an old minor", version: "v1.2.0", existing: []string{"v1.4.2", "v2.0.0"}, rules: floating,
			want: map[string]bool{"v1.2.0": true, "v1.2": true, "v1": false, "latest": false}},

		// Spellings mix: 1.x.y and v1.x.y are the same versions.
		{name: "unprefixed existing tags count", version: "v1.4.3", existing: []string{"1.5.0"}, rules: floating,
			want: map[string]bool{"v1.4.3": true, "v1.4": true, "v1": false, "latest": false}},
		{name: "build-metadata tags count", version: "v1.4.3", existing: []string{"v1.5.0_build.7"}, rules: floating,
			want: map[string]bool{"v1.4.3": true, "v1.4": true, "v1": false, "latest": false}},

		// Re-running the same release keeps everything pointing at it.
		{name: "re-run of the highest release", version: "v1.4.2", existing: []string{"v1.4.2", "v1.4", "v1", "latest", "v1.3.0"}, rules: floating,
			want: map[string]bool{"v1.4.2": true, "v1.4": true, "v1": true, "latest": true}},
		{name: "re-run of a backport", version: "v1.3.9", existing: []string{"v1.3.9", "v1.4.2"}, rules: floating,
			want: map[string]bool{"v1.3.9": true, "v1.3": true, "v1": false, "latest": false}},
		{name: "same version with other metadata", version: "v1.4.2+b2", existing: []string{"v1.4.2_b1"}, rules: floating,
			want: map[string]bool{"v1.4.2_b2": true, "v1.4": true, "v1": true, "latest": true}},

		// Prereleases.
		{name: "prerelease gets only its exact tag", version: "v2.0.0-rc.1", existing: []string{"v1.4.2"}, rules: floating,
			want: map[string]bool{"v2.0.0-rc.1": true, "v2.0": false, "v2": false, "latest": false}},
		{name: "prereleases do not hold back a release", version: "v1.4.3", existing: []string{"v1.5.0-rc.1", "v2.0.0-alpha", "v1.4.2"}, rules: floating,
			want: map[string]bool{"v1.4.3": true, "v1.4": true, "v1": true, "latest": true}},
		{name: "release after its rc", version: "v2.0.0", existing: []string{"v2.0.0-rc.2", "v1.9.0"}, rules: floating,
			want: map[string]bool{"v2.0.0": true, "v2.0": true, "v2": true, "latest": true}},
		{name: "floating prerelease: first in range", version: "v2.0.0-rc.1", existing: []string{"v1.4.2"}, rules: Rules{Floating: true, FloatPrereleases: true},
			want: map[string]bool{"v2.0.0-rc.1": true, "v2.0": true, "v2": true, "latest": false}},
		{name: "floating prerelease: a later rc", version: "v2.0.0-rc.2", existing: []string{"v2.0.0-rc.1"}, rules: Rules{Floating: true, FloatPrereleases: true},
			want: map[string]bool{"v2.0.0-rc.2": true, "v2.0": true, "v2": true, "latest": false}},
		{name: "floating prerelease: below the release", version: "v2.0.0-rc.3", existing: []string{"v2.0.0"}, rules: Rules{Floating: true, FloatPrereleases: true},
			want: map[string]bool{"v2.0.0-rc.3": true, "v2.0": false, "v2": false, "latest": false}},
		{name: "floating prerelease: below a higher rc", version: "v2.0.0-alpha.1", existing: []string{"v2.0.0-beta.1"}, rules: Rules{Floating: true, FloatPrereleases: true},
			want: map[string]bool{"v2.0.0-alpha.1": true, "v2.0": false, "v2": false, "latest": false}},
		{name: "prerelease with latest always", version: "v2.0.0-rc.1", rules: Rules{Latest: LatestAlways},
			want: map[string]bool{"v2.0.0-rc.1": true, "latest": true}},

		// 0.x.
		{name: "0.x does not float v0", version: "v0.3.1", existing: []string{"v0.3.0"}, rules: floating,
			want: map[string]bool{"v0.3.1": true, "v0.3": true, "v0": false, "latest": true}},
		{name: "0.x floats v0 when asked", version: "v0.3.1", existing: []string{"v0.3.0", "v0.2.9"}, rules: Rules{Floating: true, FloatMajorZero: true},
			want: map[string]bool{"v0.3.1": true, "v0.3": true, "v0": true, "latest": true}},
		{name: "0.x backport", version: "v0.2.10", existing: []string{"v0.3.0", "v0.2.9"}, rules: Rules{Floating: true, FloatMajorZero: true},
			want: map[string]bool{"v0.2.10": true, "v0.2": true, "v0": false, "latest": false}},
		{name: "0.x below 1.x", version: "v0.9.0", existing: []string{"v1.0.0"}, rules: floating,
			want: map[string]bool{"v0.9.0": true, "v0.9": true, "v0": false, "latest": false}},
		{name: "numeric not lexical order", version: "v1.10.0", existing: []string{"v1.9.0", "v1.2.0"}, rules: floating,
			want: map[string]bool{"v1.10.0": true, "v1.10": true, "v1": true, "latest": true}},

		// latest modes.
		{name: "latest never", version: "v3.0.0", rules: Rules{Floating: true, Latest: LatestNever},
			want: map[string]bool{"v3.0.0": true, "v3.0": true, "v3": true, "latest": false}},
		{name: "latest always on a backport", version: "v1.3.9", existing: []string{"v1.4.2"}, rules: Rules{Floating: true, Latest: LatestAlways},
			want: map[string]bool{"v1.3.9": true, "v1.3": true, "v1": false, "latest": true}},
		{name: "latest always without floating", version: "v1.3.9", existing: []string{"v1.4.2"}, rules: Rules{Latest: LatestAlways},
			want: map[string]bool{"v1.3.9": true, "latest": true}},
		{name: "latest auto without floating", version: "v9.0.0", rules: Rules{Latest: LatestAuto},
			want: map[string]bool{"v9.0.0": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PlanTags(mustParse(t, tt.version), tt.existing, tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, moves(p)); diff != "" {
				t.Errorf("moves (-want +got):\n%s\nplan:\n%s", diff, p)
			}
			if p.Tags[0].Kind != KindExact || !p.Tags[0].Move {
				t.Errorf("first tag %+v is not the exact tag, moved", p.Tags[0])
			}
			for _, tp := range p.Tags {
				if tp.Reason == "" {
					t.Errorf("%s has no reason", tp.Tag)
				}
			}
		})
	}
}

func TestPlanTagsOrderAndReasons(t *testing.T) {
	p, err := PlanTags(mustParse(t, "v1.3.9"), []string{"v1.4.2", "v1.3.8", "latest"}, Rules{Floating: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []TagPlan{
		{Tag: "v1.3.9", Kind: KindExact, Move: true, Reason: "the release itself"},
		{Tag: "v1.3", Kind: KindMinor, Move: true, Reason: "highest release in 1.3.x (above v1.3.8)"},
		{Tag: "v1", Kind: KindMajor, Reason: "v1.4.2 is higher"},
		{Tag: "latest", Kind: KindLatest, Reason: "v1.4.2 is higher"},
	}
	if diff := cmp.Diff(want, p.Tags); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestPlanTagsSameVersion(t *testing.T) {
	tests := []struct {
		version  string
		existing []string
		rules    Rules
		want     []string
	}{
		{version: "v1.4.2", existing: []string{"1.4.2", "v1.4.2", "v1.4.3"}, want: []string{"1.4.2"}},
		{version: "1.4.2", existing: []string{"v1.4.2"}, want: []string{"v1.4.2"}},
		{version: "v1.4.2+b", existing: []string{"v1.4.2_a", "1.4.2_b"}, want: []string{"1.4.2_b"}},
		{version: "v1.4.2+b", existing: []string{"v1.4.2_a", "1.4.2"}, rules: Rules{BuildMetadata: BuildMetadataDrop}, want: []string{"v1.4.2_a", "1.4.2"}},
		{version: "v1.4.2-rc.1", existing: []string{"v1.4.2"}, want: nil},
	}
	for _, tt := range tests {
		p, err := PlanTags(mustParse(t, tt.version), tt.existing, tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, p.SameVersion); diff != "" {
			t.Errorf("%s in %v: SameVersion (-want +got):\n%s", tt.version, tt.existing, diff)
		}
	}
}

func TestRulesValidate(t *testing.T) {
	v := mustParse(t, "v1.0.0")
	for _, r := range []Rules{{Latest: "sometimes"}, {Prefix: "V"}, {BuildMetadata: "plus"}} {
		if _, err := PlanTags(v, nil, r); !errors.Is(err, ErrRules) {
			t.Errorf("PlanTags with %+v: err = %v, want ErrRules", r, err)
		}
	}
	long := mustParse(t, "v1.0.0-"+strings.Repeat("a", 130))
	if _, err := ExactTag(long, Rules{}); err == nil || !strings.Contains(err.Error(), "not a valid image tag") {
		t.Errorf("ExactTag of a 136-character version: err = %v", err)
	}
}

func TestParseTag(t *testing.T) {
	tests := []struct {
		tag  string
		want string // canonical version, "" if not a version
	}{
		{"v1.4.2", "1.4.2"},
		{"1.4.2", "1.4.2"},
		{"v2.0.0-rc.1_build.5", "2.0.0-rc.1+build.5"},
		{"v1.4", ""},
		{"v1", ""},
		{"latest", ""},
		{"abc1234", ""},
		{"v1.0.0_a_b", ""},
		{"V1.0.0", ""},
	}
	for _, tt := range tests {
		v, ok := ParseTag(tt.tag)
		got := ""
		if ok {
			got = v.String()
		}
		if got != tt.want {
			t.Errorf("ParseTag(%q) = %q, want %q", tt.tag, got, tt.want)
		}
	}
}

func FuzzParseTag(f *testing.F) {
	for _, s := range []string{"v1.4.2", "1.0.0_b.1", "v2.0.0-rc.1_x", "latest", "v1.4", "_", "v_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		v, ok := ParseTag(tag)
		if !ok {
			return
		}
		// A tag read as a version is written back to a valid tag that reads
		// as the same version.
		again, err := ExactTag(v, Rules{})
		if err != nil {
			if len(tag) > 128 {
				return
			}
			t.Fatalf("ParseTag(%q) = %s, but ExactTag fails: %v", tag, v, err)
		}
		w, ok := ParseTag(again)
		if !ok || w.Compare(v) != 0 || w.Build != v.Build {
			t.Fatalf("round trip %q -> %s -> %q changed the version", tag, v, again)
		}
	})
}
