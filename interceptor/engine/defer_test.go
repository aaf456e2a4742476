package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

func TestReadsVar(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{blogFilter, false},
		{`body.ref == "refs/heads/main"`, false},
		{`body.extensions == 1`, false}, // a field of body, not the variable
		{`"extensions" in body`, false},
		{`header.canonical("X-Gitlab-Event") == "Push Hook"`, false},
		{`extensions.push.branch == "main"`, true},
		{`has(extensions.changed_files)`, true},
		{`.extensions.push.branch == "main"`, true},
		{`size(extensions) > 0`, true},
		{`[1].exists(x, x == 1) || extensions.push.is_tag`, true},
		{`[1].exists(extensions, extensions == 1)`, true}, // shadowing counts as reading
	} {
		t.Run(tc.expr, func(t *testing.T) {
			ast, iss := e.env.Compile(tc.expr)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			if got := readsVar(ast, "extensions"); got != tc.want {
				t.Errorf("readsVar = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeferExtensions checks Input.DeferExtensions over every push and tag
// push fixture (interceptor/gitlab, policies) and rules that read
// extensions or not: the outcome, the error and, for a decision that
// continues, every value of the Decision are those of an evaluation that
// computes the extensions first; a rejected push leaves Push,
// ChangedFiles and Extensions unset only when no expression names
// extensions.
func TestDeferExtensions(t *testing.T) {
	rules := []Rules{
		{Filter: blogFilter},
		{Filter: "!(" + blogFilter + ")"},
		{Filter: `body.commits.exists(c, c.added.exists(f, f.startsWith("docs/")))`},
		{Filter: `body.ref == "refs/heads/main"`, Overlays: []Overlay{{Key: "sha", Expression: `body.checkout_sha`}}},
		{Filter: `body.ref != "refs/heads/main"`, Overlays: []Overlay{{Key: "push.sha", Expression: `body.after`}}},
		{Filter: `body.total_commits_count > 100`},
		{Filter: `body.nosuchfield == 1`}, // an error, the same either way
		{Filter: `extensions.changed_files.all.matchesAny(["**/*.md"])`},
		{Filter: `!extensions.push.is_delete`, Overlays: []Overlay{{Key: "tag", Expression: `extensions.push.short_sha`}}},
		{Filter: `true`, Overlays: []Overlay{{Key: "n", Expression: `size(extensions.changed_files.all)`}}},
		{Overlays: []Overlay{{Key: "ref", Expression: `body.ref`}}},
		{Value: `body.commits.size()`},
		{Filter: `body.ref.endsWith("/main")`, Value: `extensions.push.branch`},
	}
	fixtures := pushFixtures(t)
	for _, costProof := range []bool{false, true} {
		var opts []Option
		if costProof {
			opts = append(opts, WithCostProof())
		}
		e := newEngine(t, opts...)
		for _, r := range rules {
			p := mustCompile(t, e, r)
			reads := p.readsExtensions()
			for name, fx := range fixtures {
				h := pushHeader(fx.header)
				ev, err := e.Decode(Input{Body: fx.body, Header: h})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				in := Input{Event: ev, Header: h, RequestURL: "http://el/", Extensions: map[string]any{"earlier": "x"}}
				want, wantErr := e.Evaluate(context.Background(), p, in)
				in.DeferExtensions = true
				got, gotErr := e.Evaluate(context.Background(), p, in)
				if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
					t.Fatalf("%s, %+v: error %v, want %v", name, r, gotErr, wantErr)
				}
				if wantErr != nil {
					continue
				}
				if !want.Continue && !reads {
					if got.Continue || got.Push != nil || got.ChangedFiles != nil || got.Extensions != nil {
						t.Errorf("%s, %+v: a rejected push computed its extensions: %+v", name, r, got)
					}
					continue
				}
				// Decision.Cost counts the tracked expressions only under
				// the cost proof, which may measure a smaller request when
				// nothing reads the extensions.
				opt := cmpopts.IgnoreFields(Decision{}, "Cost")
				if diff := cmp.Diff(want, got, opt, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s, %+v (cost proof %v): decision differs (-computed first +deferred):\n%s", name, r, costProof, diff)
				}
				if !costProof && want.Cost != got.Cost {
					t.Errorf("%s, %+v: cost %d, want %d", name, r, got.Cost, want.Cost)
				}
			}
		}
	}
}

type pushFixture struct {
	header string
	body   []byte
}

// pushFixtures returns the push and tag push payloads of interceptor/gitlab's
// and policies' testdata, by file, with their X-Gitlab-Event.
func pushFixtures(t *testing.T) map[string]pushFixture {
	t.Helper()
	out := map[string]pushFixture{}
	for _, dir := range []string{filepath.Join("..", "gitlab", "testdata"), filepath.Join("..", "..", "policies", "testdata")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var kind struct {
				ObjectKind string `json:"object_kind"`
			}
			if json.Unmarshal(body, &kind) != nil {
				continue
			}
			switch gitlab.Kind(kind.ObjectKind) {
			case gitlab.KindPush:
				out[f] = pushFixture{gitlab.HeaderPush, body}
			case gitlab.KindTagPush:
				out[f] = pushFixture{gitlab.HeaderTagPush, body}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found %d push fixtures, want the testdata's", len(out))
	}
	return out
}
