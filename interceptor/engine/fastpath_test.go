package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fastExprs are filters inside and outside the fast path's subset, and
// ones whose evaluation leaves it on some payloads (a missing key, a
// number, a null, a header): every answer must be cel-go's.
var fastExprs = []string{
	blogFilter,
	`body.commits.exists(c, c.added.exists(f, f.startsWith("docs/")))`,
	`body.ref == "refs/heads/main"`,
	`body.ref != "refs/heads/main" && body.user_username == "jsmith"`,
	`has(body.commits) && size(body.commits) > 1`,
	`has(body.nothing) || !has(body.ref)`,
	`body.commits.all(c, c.message.contains("fix"))`,
	`body.commits.exists_one(c, c.id.startsWith("b"))`,
	`body.commits.filter(c, size(c.added) > 0).map(c, c.id).size() >= 1`,
	`"main" in body.ref.split("/")`,
	`body.project.path_with_namespace.endsWith("/web") || body.missing == "x"`,
	`body.missing == "x" || body.ref.startsWith("refs/")`,
	`body.total_commits_count > 0`,
	`body.checkout_sha == null`,
	`body.commits.map(c, c.added).exists(l, "README.md" in l)`,
	`extensions.changed_files.all.exists(p, p.matches("^src/"))`,
	`requestURL.contains("el.ci")`,
	`header.canonical("X-Gitlab-Event") == "Push Hook"`,
	`body.commits[0].id.size() == 40 && body.commits[1].id != ""`,
	`body.commits[9].id == "x"`,
	`body["ref"] + "/x" == "refs/heads/master/x"`,
	`true ? body.ref == "refs/heads/master" : false`,
	`!(body.ref.startsWith("refs/tags/"))`,
	`body.commits.exists(c, c.author.email == "")`,
	`"b" in [body.ref] + ["b"]`,
	`size("héllo") == 5 && size(body.commits.map(c, c.id)) + 1 > 1`,
	`body.commits.map(c, c.added + c.modified + c.removed).exists(fs, fs.exists(f, f.matches("(")))`,
	`body.commits.exists(c, c.added.exists(f, f.matches("[")))`,
	`9223372036854775807 + size(body.commits) > 0`,
	`body.commits.all(c, c.timestamp.matches("^20"))`,
	`body.project.exists(k, k == "name")`,
	`1 in body.commits.map(c, size(c.added))`,
	`body.commits.exists(c, c.missing.exists(f, true)) || true`,
	`body.ref + "/" + body.after + "/" + body.before != "x"`,
	`size(body.commits.map(c, c.added) + [body.ref] + body.commits) > 0`,
	`body.commits.exists(c, (c.added + c.modified + c.id).size() > 0)`,
	`9223372036854775807 + 1 + size(body.commits) > 0`,
}

// payloads is every fixture payload with its event kind, plus shapes the
// fixtures lack (nulls, numbers where strings are usual, empty lists).
func payloads(t testing.TB) map[string]Input {
	t.Helper()
	fixtures, err := filepath.Glob(filepath.Join("..", "gitlab", "testdata", "*.json"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v %v", fixtures, err)
	}
	out := map[string]Input{}
	for _, fx := range fixtures {
		body, err := os.ReadFile(fx)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(fx)] = Input{Body: body, Header: pushHeader(eventKind(filepath.Base(fx))), RequestURL: "http://el.ci.svc/"}
	}
	for name, body := range map[string]string{
		"nulls":       `{"object_kind":"push","ref":"refs/heads/main","checkout_sha":null,"commits":[{"id":"b1","added":[null,"a"],"modified":[],"removed":[]}]}`,
		"empty":       `{"object_kind":"push","ref":"refs/heads/main","commits":[]}`,
		"mixed-lists": `{"object_kind":"push","ref":"refs/heads/main","commits":[{"id":"b2","added":["src/a","docs/b"],"modified":["app/x"],"removed":[]}]}`,
	} {
		out[name] = Input{Body: []byte(body), Header: pushHeader("Push Hook"), RequestURL: "http://el.ci.svc/"}
	}
	return out
}

func eventKind(base string) string {
	switch {
	case strings.HasPrefix(base, "tag_"):
		return "Tag Push Hook"
	case strings.HasPrefix(base, "merge_request"):
		return "Merge Request Hook"
	}
	return "Push Hook"
}

// TestFastPathAgrees checks that the fast path changes no decision: for
// every payload and filter, the engine gives the same result or the same
// error (kind and message) with and without it, and the fast path decides
// on most of the requests its subset covers.
func TestFastPathAgrees(t *testing.T) {
	fast := newEngine(t, WithCostProof())
	slow := newEngine(t, WithCostProof())
	slow.noFastPath = true
	decided, gaveUp := 0, 0
	fast.onFastPath = func(ok bool) {
		if ok {
			decided++
		} else {
			gaveUp++
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, expr := range fastExprs {
		pf, errF := fast.Compile(Rules{Filter: expr})
		ps, errS := slow.Compile(Rules{Filter: expr})
		if (errF == nil) != (errS == nil) {
			t.Fatalf("%s: compile errors differ: %v / %v", expr, errF, errS)
		}
		if errF != nil {
			continue
		}
		for name, in := range payloads(t) {
			for _, ctx := range []context.Context{context.Background(), cancelled} {
				want, wantErr := slow.Evaluate(ctx, ps, in)
				got, gotErr := fast.Evaluate(ctx, pf, in)
				if (wantErr == nil) != (gotErr == nil) {
					t.Errorf("%s on %s: cel-go %v, fast path %v", expr, name, wantErr, gotErr)
					continue
				}
				if wantErr != nil {
					if wantErr.Error() != gotErr.Error() || KindOf(wantErr) != KindOf(gotErr) {
						t.Errorf("%s on %s: errors differ:\ncel-go:    %v\nfast path: %v", expr, name, wantErr, gotErr)
					}
					continue
				}
				if want.Continue != got.Continue {
					t.Errorf("%s on %s: cel-go %v, fast path %v", expr, name, want.Continue, got.Continue)
				}
			}
		}
	}
	t.Logf("fast path: %d decided, %d given back to cel-go", decided, gaveUp)
	if decided < 200 || gaveUp == 0 {
		t.Errorf("fast path decided %d and gave back %d evaluations: the test no longer exercises both", decided, gaveUp)
	}
}

// TestFastPathSubset pins which filters have a fast path at all.
func TestFastPathSubset(t *testing.T) {
	e := newEngine(t, WithCostProof())
	for _, tc := range []struct {
		expr string
		fast bool
	}{
		{blogFilter, true},
		{`body.ref == "refs/heads/main"`, true},
		{`extensions.changed_files.all.exists(p, p.matches("^src/"))`, true},
		{`body.commits[0].id.size() == 40`, true},
		{`"main" in body.ref.split("/")`, false},                              // split: an extension
		{`header.canonical("X-Gitlab-Event") == "Push Hook"`, false},          // header, a celenv function
		{`body.checkout_sha == null`, false},                                  // null literal
		{`body.total_commits_count > 1.5`, false},                             // double literal
		{`body.commits.exists(c, c.added.exists(f, f.matches(c.id)))`, false}, // pattern not constant
		{`extensions.changed_files.all.matchesAny(["src/**"])`, false},        // celenv function
	} {
		p, err := e.Compile(Rules{Filter: tc.expr})
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if got := p.filter.fast != nil; got != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.expr, got, tc.fast)
		}
	}
}

// FuzzFastPath decides random bodies with the fast path and with cel-go
// alone: same decision, same error.
func FuzzFastPath(f *testing.F) {
	for _, in := range payloads(f) {
		f.Add(in.Body, uint8(0))
	}
	fast := newEngine(f, WithCostProof())
	slow := newEngine(f, WithCostProof())
	slow.noFastPath = true
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		expr := fastExprs[int(which)%len(fastExprs)]
		pf, err := fast.Compile(Rules{Filter: expr})
		if err != nil {
			return
		}
		ps, err := slow.Compile(Rules{Filter: expr})
		if err != nil {
			t.Fatal(err)
		}
		in := Input{Body: body, Header: pushHeader("Push Hook"), RequestURL: "http://el.ci.svc/"}
		want, wantErr := slow.Evaluate(context.Background(), ps, in)
		got, gotErr := fast.Evaluate(context.Background(), pf, in)
		switch {
		case (wantErr == nil) != (gotErr == nil):
			t.Fatalf("%s: cel-go %v, fast path %v", expr, wantErr, gotErr)
		case wantErr != nil && (wantErr.Error() != gotErr.Error() || KindOf(wantErr) != KindOf(gotErr)):
			t.Fatalf("%s: errors differ: %v / %v", expr, wantErr, gotErr)
		case wantErr == nil && want.Continue != got.Continue:
			t.Fatalf("%s: cel-go %v, fast path %v", expr, want.Continue, got.Continue)
		}
	})
}
