package gitlab

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden is what a fixture's golden file records: everything the engine
// takes from this package for one webhook.
type golden struct {
	EventType    string         `json:"event_type"`
	Kind         Kind           `json:"kind"`
	ObjectKind   string         `json:"object_kind"`
	Push         map[string]any `json:"push,omitempty"`          // Facts.Map()
	ChangedFiles map[string]any `json:"changed_files,omitempty"` // PayloadChangedFiles(...).Map()
	MergeRequest map[string]any `json:"merge_request,omitempty"` // MergeRequestEvent.Facts().Map()
}

func TestGolden(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			ev, err := Decode(fx.header, readFixture(t, fx.file))
			if err != nil {
				t.Fatal(err)
			}
			g := golden{EventType: ev.Type, Kind: ev.Kind, ObjectKind: ev.ObjectKind}
			if ev.Push != nil {
				g.Push = ev.Push.Facts().Map()
				g.ChangedFiles = PayloadChangedFiles(ev.Push).Map()
			}
			if ev.MergeRequest != nil {
				g.MergeRequest = ev.MergeRequest.Facts().Map()
			}
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", fx.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s (-want +got; go test -update rewrites it):\n%s", path, diff)
			}
		})
	}
}

// TestFactsByCase spells out the facts that matter most for each kind of
// push, independently of the golden files.
func TestFactsByCase(t *testing.T) {
	type keyFacts struct {
		Branch, Tag, SHA, ShortSHA, RefSlug                     string
		IsBranch, IsTag, IsNewRef, IsDelete, IsDefaultBranch    bool
		IsBranchDelete, IsTagDelete, CISkip, SemverValid        bool
		SemverVersion, SemverPrerelease                         string
		SemverMajor, SemverMinor, SemverPatch, TotalCommitCount int64
	}
	tests := []struct {
		file string
		want keyFacts
	}{
		{"push.json", keyFacts{
			Branch: "main", SHA: "c95fc90a82e297e2b5fcd3722b931d149a388884", ShortSHA: "c95fc90a", RefSlug: "main",
			IsBranch: true, IsDefaultBranch: true, TotalCommitCount: 3,
		}},
		{"new_branch.json", keyFacts{
			Branch: "feature/Refunds-API", SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e", ShortSHA: "87b8ab59",
			RefSlug: "feature-refunds-api", IsBranch: true, IsNewRef: true, TotalCommitCount: 2,
		}},
		{"branch_delete.json", keyFacts{
			Branch: "feature/Refunds-API", RefSlug: "feature-refunds-api", IsBranch: true, IsDelete: true, IsBranchDelete: true,
		}},
		{"ci_skip_push.json", keyFacts{
			Branch: "main", SHA: "9d06db5ccbdebba1810fc5812af503e52503bb3b", ShortSHA: "9d06db5c", RefSlug: "main",
			IsBranch: true, IsDefaultBranch: true, CISkip: true, TotalCommitCount: 1,
		}},
		{"tag_push.json", keyFacts{
			Tag: "v1.4.0", SHA: "c95fc90a82e297e2b5fcd3722b931d149a388884", ShortSHA: "c95fc90a", RefSlug: "v1-4-0",
			IsTag: true, IsNewRef: true, SemverValid: true, SemverVersion: "1.4.0", SemverMajor: 1, SemverMinor: 4,
			TotalCommitCount: 1,
		}},
		{"tag_push_prerelease.json", keyFacts{
			Tag: "v2.0.0-rc.1", SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e", ShortSHA: "87b8ab59", RefSlug: "v2-0-0-rc-1",
			IsTag: true, IsNewRef: true, SemverValid: true, SemverVersion: "2.0.0-rc.1", SemverPrerelease: "rc.1", SemverMajor: 2,
			TotalCommitCount: 1,
		}},
		{"tag_push_not_semver.json", keyFacts{
			Tag: "v1.2", SHA: "e4e15fb24bbede011e7c4ad3e3cc9d5054c1e668", ShortSHA: "e4e15fb2", RefSlug: "v1-2",
			IsTag: true, IsNewRef: true,
		}},
		{"tag_delete.json", keyFacts{
			Tag: "v1.3.0", RefSlug: "v1-3-0", IsTag: true, IsDelete: true, IsTagDelete: true,
			SemverValid: true, SemverVersion: "1.3.0", SemverMajor: 1, SemverMinor: 3,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readFixture(t, tt.file)
			var raw struct {
				CheckoutSHA *string `json:"checkout_sha"`
			}
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatal(err)
			}
			if raw.CheckoutSHA != nil && *raw.CheckoutSHA != tt.want.SHA {
				t.Fatalf("fixture checkout_sha %s, table expects sha %s", *raw.CheckoutSHA, tt.want.SHA)
			}
			ev, err := Decode("", body)
			if err != nil {
				t.Fatal(err)
			}
			f := ev.Push.Facts()
			got := keyFacts{
				Branch: f.Branch, Tag: f.Tag, SHA: f.SHA, ShortSHA: f.ShortSHA, RefSlug: f.RefSlug,
				IsBranch: f.IsBranch, IsTag: f.IsTag, IsNewRef: f.IsNewRef, IsDelete: f.IsDelete,
				IsDefaultBranch: f.IsDefaultBranch, IsBranchDelete: f.IsBranchDelete, IsTagDelete: f.IsTagDelete,
				CISkip: f.CISkip, SemverValid: f.Semver.Valid, SemverVersion: f.Semver.Version,
				SemverPrerelease: f.Semver.Prerelease, SemverMajor: f.Semver.Major, SemverMinor: f.Semver.Minor,
				SemverPatch: f.Semver.Patch, TotalCommitCount: f.TotalCommitsCount,
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFactsEdgeCases(t *testing.T) {
	tests := []struct {
		name  string
		event PushEvent
		check func(Facts) string
		want  string
	}{
		{
			name:  "sha falls back to after without checkout_sha",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", Before: "1111", After: "abcdef0123456789"},
			check: func(f Facts) string { return f.SHA + " " + f.ShortSHA },
			want:  "abcdef0123456789 abcdef01",
		},
		{
			name:  "short sha of a short value",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "abc"},
			check: func(f Facts) string { return f.SHA + " " + f.ShortSHA },
			want:  "abc abc",
		},
		{
			name:  "SHA-256 zero revision deletes",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", Before: strings.Repeat("a", 64), After: strings.Repeat("0", 64)},
			check: func(f Facts) string {
				return strings.Join([]string{str(f.IsDelete), str(f.IsBranchDelete), f.SHA}, " ")
			},
			want: "true true ",
		},
		{
			name:  "SHA-256 zero revision creates",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", Before: strings.Repeat("0", 64), After: strings.Repeat("b", 64)},
			check: func(f Facts) string { return str(f.IsNewRef) + " " + f.ShortSHA },
			want:  "true bbbbbbbb",
		},
		{
			name:  "empty before is not a new ref",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "b"},
			check: func(f Facts) string { return str(f.IsNewRef) },
			want:  "false",
		},
		{
			name:  "project id falls back to project.id",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", Project: Project{ID: 9}},
			check: func(f Facts) string { return str(f.ProjectID == 9) },
			want:  "true",
		},
		{
			name: "clone urls fall back to repository",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x",
				Repository: Repository{GitHTTPURL: "https://h/r.git", GitSSHURL: "git@h:r.git"}},
			check: func(f Facts) string { return f.GitHTTPURL + " " + f.GitSSHURL },
			want:  "https://h/r.git git@h:r.git",
		},
		{
			name:  "no default branch, no default-branch push",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/"},
			check: func(f Facts) string { return str(f.IsBranch) + " " + str(f.IsDefaultBranch) },
			want:  "true false",
		},
		{
			name:  "ref that is neither branch nor tag",
			event: PushEvent{ObjectKind: "push", Ref: "refs/merge-requests/1/head", After: "abc"},
			check: func(f Facts) string {
				return strings.Join([]string{str(f.IsBranch), str(f.IsTag), f.Branch, f.Tag, f.RefSlug, f.Semver.Error}, "|")
			},
			want: "false|false||||not a tag",
		},
		{
			name: "skip marker in the built commit",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "c2",
				Commits: []Commit{{ID: "c1", Message: "wip [ci skip]"}, {ID: "c2", Message: "Fix [Skip-CI] please"}}},
			check: func(f Facts) string { return str(f.CISkip) },
			want:  "true",
		},
		{
			name: "skip marker only in an older commit",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "c2",
				Commits: []Commit{{ID: "c1", Message: "wip [ci skip]"}, {ID: "c2", Message: "done"}}},
			check: func(f Facts) string { return str(f.CISkip) },
			want:  "false",
		},
		{
			name: "blank push option does not skip",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "c",
				PushOptions: map[string]any{"ci": map[string]any{"skip": " "}}},
			check: func(f Facts) string { return str(f.CISkip) },
			want:  "false",
		},
		{
			name: "skip on a delete is only the push option",
			event: PushEvent{ObjectKind: "push", Ref: "refs/heads/x", After: "0000",
				Commits: []Commit{{ID: "0000", Message: "[ci skip]"}}},
			check: func(f Facts) string { return str(f.CISkip) },
			want:  "false",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.check(tt.event.Facts())); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func str(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestRefSlug(t *testing.T) {
	tests := []struct{ in, want string }{
		{"main", "main"},
		{"feature/Refunds-API", "feature-refunds-api"},
		{"release/2025.03", "release-2025-03"},
		{"v1.2.3-rc.1+build.5", "v1-2-3-rc-1-build-5"},
		{"feature//double", "feature--double"},
		{"-leading-and-trailing-", "leading-and-trailing"},
		{"__init__", "init"},
		{"---", ""},
		{"", ""},
		{"Ünïcödé", "n-c-d"},
		{"日本", ""},
		{"a日本b", "a--b"},
		{"\u212Aelvin", "kelvin"},
		{"\u0130stanbul", "i-stanbul"},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		// Cut at 63 characters first, then trimmed: GitLab's order.
		{strings.Repeat("a", 62) + "/b", strings.Repeat("a", 62)},
		{strings.Repeat("a", 61) + "日b", strings.Repeat("a", 61) + "-b"},
		{strings.Repeat("日", 62) + "ab", "a"},
		{strings.Repeat("a", 62) + "\u0130", strings.Repeat("a", 62) + "i"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := RefSlug(tt.in); got != tt.want {
				t.Errorf("RefSlug(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSemverFacts(t *testing.T) {
	tests := []struct {
		tag  string
		want Semver
	}{
		{"v1.2.3", Semver{Valid: true, Version: "1.2.3", Major: 1, Minor: 2, Patch: 3}},
		{"1.2.3", Semver{Valid: true, Version: "1.2.3", Major: 1, Minor: 2, Patch: 3}},
		{"v2.0.0-rc.1", Semver{Valid: true, Version: "2.0.0-rc.1", Major: 2, Prerelease: "rc.1", IsPrerelease: true}},
		{"v1.0.0+build.7", Semver{Valid: true, Version: "1.0.0+build.7", Major: 1, Build: "build.7"}},
		{"v1.0.0-alpha+001", Semver{Valid: true, Version: "1.0.0-alpha+001", Major: 1, Prerelease: "alpha", Build: "001", IsPrerelease: true}},
		{"v1.2", Semver{Error: `not a semantic version: "v1.2": has 2 numeric component(s); SemVer 2.0 requires exactly three, MAJOR.MINOR.PATCH (e.g. 1.2.0)`}},
		{"v01.2.3", Semver{Error: `not a semantic version: "v01.2.3": a numeric component or identifier has a leading zero, which SemVer 2.0 forbids`}},
		{"v1.2.3.4", Semver{Error: `not a semantic version: "v1.2.3.4": has more than three numeric components; SemVer 2.0 requires exactly MAJOR.MINOR.PATCH`}},
		{"v1.0.0-", Semver{Error: `not a semantic version: "v1.0.0-": the pre-release part must be dot-separated, non-empty identifiers of [0-9A-Za-z-]`}},
		{"v18446744073709551615.0.0", Semver{Error: "version component above 9223372036854775807, CEL's largest int"}},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, semverFacts(tt.tag)); diff != "" {
				t.Errorf("semverFacts(%q) (-want +got):\n%s", tt.tag, diff)
			}
		})
	}
}

func TestHasSkipMarker(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{"[ci skip]", true},
		{"[skip ci]", true},
		{"fix: thing [CI SKIP]", true},
		{"[ci_skip] trailing", true},
		{"[skip-ci]", true},
		{"[[ci skip]", true},
		{"[ci  skip]", false},
		{"[ci skip", false},
		{"ci skip", false},
		{"[ciskip]", false},
		{"[skip ci ]", false},
		{"[", false},
		{"", false},
		{"[skip]ci]", false},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			if got := hasSkipMarker(tt.msg); got != tt.want {
				t.Errorf("hasSkipMarker(%q) = %v, want %v", tt.msg, got, tt.want)
			}
		})
	}
}

// TestMapKeysMatchDocs keeps Facts.Map, MergeRequestFacts.Map, Semver.Map
// and ChangedFiles.Map in step with the tables of docs/extensions.md, the
// contract policies and TriggerBindings are written against.
func TestMapKeysMatchDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "extensions.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string][]string{}
	var section string
	semverKeys := regexp.MustCompile("`semver`.*?\\{([a-z_, ]+)\\}")
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "## ") {
			section = strings.Trim(strings.TrimPrefix(line, "## "), "` ")
			section = strings.Fields(section)[0]
			section = strings.Trim(section, "`")
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(first, -1) {
			sections[section] = append(sections[section], m[1])
		}
		if m := semverKeys.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[1], ",") {
				sections["semver"] = append(sections["semver"], strings.TrimSpace(k))
			}
		}
	}
	keys := func(m map[string]any) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		return out
	}
	for name, got := range map[string][]string{
		"extensions.push":          keys(Facts{}.Map()),
		"extensions.merge_request": keys(MergeRequestFacts{}.Map()),
		"extensions.changed_files": keys(ChangedFiles{}.Map()),
		"semver":                   keys(Semver{}.Map()),
	} {
		want := sections[name]
		sort.Strings(want)
		sort.Strings(got)
		if len(want) == 0 {
			t.Errorf("docs/extensions.md: no keys found for %s", name)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s keys (-docs/extensions.md +Map()):\n%s", name, diff)
		}
	}
}

// TestMapJSONMatchesStruct checks that Map and the struct's json encoding
// agree, so the typed form and the CEL form cannot drift apart.
func TestMapJSONMatchesStruct(t *testing.T) {
	for _, fx := range fixtures {
		if fx.kind == KindOther {
			continue
		}
		t.Run(fx.file, func(t *testing.T) {
			ev, err := Decode(fx.header, readFixture(t, fx.file))
			if err != nil {
				t.Fatal(err)
			}
			var f interface{ Map() map[string]any }
			if ev.MergeRequest != nil {
				f = ev.MergeRequest.Facts()
			} else {
				f = ev.Push.Facts()
			}
			viaStruct, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			viaMap, err := json.Marshal(f.Map())
			if err != nil {
				t.Fatal(err)
			}
			var a, b map[string]any
			if err := json.Unmarshal(viaStruct, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(viaMap, &b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("json(Facts) vs json(Facts.Map()) (-struct +map):\n%s", diff)
			}
		})
	}
}

// TestMapValueTypes pins the Go types of Map values: CEL sees string, bool,
// int (int64), list ([]any) and map (map[string]any), never float64 or nil.
func TestMapValueTypes(t *testing.T) {
	var check func(path string, v any)
	check = func(path string, v any) {
		switch v := v.(type) {
		case string, bool, int64:
		case []any:
			if v == nil {
				t.Errorf("%s: nil list", path)
			}
			for i, e := range v {
				check(path+"["+string(rune('0'+i%10))+"]", e)
			}
		case map[string]any:
			for k, e := range v {
				check(path+"."+k, e)
			}
		default:
			t.Errorf("%s: value of type %T", path, v)
		}
	}
	ev, err := Decode(HeaderPush, readFixture(t, "net_changes_push.json"))
	if err != nil {
		t.Fatal(err)
	}
	check("push", ev.Push.Facts().Map())
	check("changed_files", PayloadChangedFiles(ev.Push).Map())
	check("empty changed_files", ChangedFiles{}.Map())
	if got := (ChangedFiles{}).Map()["source"]; got != "none" {
		t.Errorf("zero ChangedFiles source = %v, want none", got)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(ChangedFiles{}.Map()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"added":[]`) {
		t.Errorf("empty lists must encode as [], got %s", buf.String())
	}
}
