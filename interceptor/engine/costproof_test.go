package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// proofExprs exercise every cost model the proof relies on: cel-go's
// macros and regular expressions, and celenv's functions over strings,
// headers, paths and JSON.
var proofExprs = []string{
	blogFilter,
	`extensions.changed_files.all.matchesAny(["**", "!**/*.md", "!docs/**"])`,
	`extensions.changed_files.all.filterPaths(["src/**"]).size() > 0`,
	`body.commits.all(c, body.commits.all(d, c.id != d.id || c == d))`,
	`body.commits.exists(c, c.message.contains("[skip ci]") || c.message.matches("(?i)wip"))`,
	`header.canonical("X-Gitlab-Event") == "Push Hook" && header.match("Content-Type", "application/json")`,
	`body.marshalJSON().size() > 10 && size(body.project.path_with_namespace.split("/")) == 2`,
	`body.ref.split("/").map(s, s.upperAscii()).join("-").size() > 0`,
	`extensions.push.ref_slug.truncate(5) + requestURL != "" && body.map(k, k).size() > 0`,
	`has(body.commits) && body.commits.map(c, c.added.map(a, a.size())).size() >= 0`,
	`"{\"a\": [1, 2]}".parseJSON().a.size() == 2 && body.object_kind != ""`,
}

// TestCostProofSound checks the claim WithCostProof rests on: whenever an
// expression would run untracked on a request, its tracked cost on that
// request is within proofMargin times the estimate at the proven size,
// hence within the limit. Every fixture payload and every expression above.
func TestCostProofSound(t *testing.T) {
	tracked := newEngine(t)
	proving := newEngine(t, WithCostProof())
	fixtures, err := filepath.Glob(filepath.Join("..", "gitlab", "testdata", "*.json"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v %v", fixtures, err)
	}
	untrackedRuns := 0
	for _, expr := range proofExprs {
		for _, fx := range fixtures {
			body, err := os.ReadFile(fx)
			if err != nil {
				t.Fatal(err)
			}
			kind := "Push Hook"
			switch base := filepath.Base(fx); {
			case strings.HasPrefix(base, "tag_"):
				kind = "Tag Push Hook"
			case strings.HasPrefix(base, "merge_request"):
				kind = "Merge Request Hook"
			}
			in := Input{Body: body, Header: pushHeader(kind), RequestURL: "http://el.ci.svc/"}
			pt := mustCompile(t, tracked, Rules{Value: expr})
			want, err := tracked.Evaluate(context.Background(), pt, in)
			if err != nil {
				continue // the expression does not apply to this payload
			}
			pp := mustCompile(t, proving, Rules{Value: expr})
			var bound uint64
			proving.onUntracked = func(_ *compiled, est uint64) { bound = est }
			got, err := proving.Evaluate(context.Background(), pp, in)
			if err != nil {
				t.Fatalf("%s on %s: tracked succeeded, proven failed: %v", expr, fx, err)
			}
			if string(got.Value) != string(want.Value) {
				t.Errorf("%s on %s: value %s, tracked %s", expr, fx, got.Value, want.Value)
			}
			if got.Cost != 0 { // ran tracked: nothing to check
				continue
			}
			untrackedRuns++
			// bound is the estimate that proved this run: at the proven
			// size of every value, or at the sizes of the paths the
			// expression reads (pathproof.go).
			if want.Cost > proofMargin*bound || proofMargin*bound > proving.costLimit {
				t.Errorf("%s on %s: ran untracked with actual cost %d, estimate %d, limit %d",
					expr, fx, want.Cost, bound, proving.costLimit)
			}
		}
	}
	if untrackedRuns == 0 {
		t.Fatal("no expression ran untracked: the test checks nothing")
	}
	t.Logf("%d evaluations ran untracked", untrackedRuns)
}

// TestCostProofKeepsLimits: with WithCostProof the cost limit and the
// deadline still stop an expression the estimate cannot bound.
// A comprehension variable over a computed list is as large as what
// computed it, not as the request's largest value: each level below
// doubles the string, so the proof must not run it untracked.
func TestCostProofNestedComputedLists(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(fixture(t, "push.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["pad"] = strings.Repeat("x", 900)
	body, _ := json.Marshal(m)
	expr := "a17.contains('zz') == false"
	for i := 17; i > 0; i-- {
		expr = fmt.Sprintf("[a%d+a%d].all(a%d, %s)", i-1, i-1, i, expr)
	}
	expr = "[body.pad].all(a0, " + expr + ")"
	e := newEngine(t, WithCostProof())
	p := mustCompile(t, e, Rules{Filter: expr})
	_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if KindOf(err) != KindLimit {
		t.Errorf("17 doublings of a 900-byte string: %v, want the cost limit", err)
	}
}

// provableFilter reads request values only: its estimate bounds its cost.
const provableFilter = `body.commits.exists(c, c.added.exists(f, f.startsWith("src/")) || c.modified.exists(f, matches(f, "^(app|tests)|^Gemfile$")))`

func TestCostProofKeepsLimits(t *testing.T) {
	body := fixture(t, "push.json")
	e := newEngine(t, WithCostProof(), WithCostLimit(1000))
	p := mustCompile(t, e, Rules{Filter: `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))`})
	_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "cost limit of 1000 exceeded") {
		t.Errorf("error %v, want the cost limit", err)
	}
	// A filter over request values only is proven on push.json at the
	// default limit, not at 1000. (The blog filter iterates a computed
	// list, whose elements only the path proof bounds: TestPathProofSound.)
	p = mustCompile(t, e, Rules{Filter: provableFilter})
	d, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Cost == 0 {
		t.Error("the filter ran untracked at a limit of 1000; its estimate does not prove that")
	}
	// A header value larger than the proven size makes it tracked.
	e = newEngine(t, WithCostProof())
	p = mustCompile(t, e, Rules{Filter: provableFilter})
	h := pushHeader("Push Hook")
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: h})
	if err != nil || d.Cost != 0 {
		t.Fatalf("push.json: cost %d, %v; want untracked", d.Cost, err)
	}
	// (Over the path proof's largest size too: below it, the path proof
	// measures the paths the filter reads, and this header is not one.)
	h.Set("X-Padding", strings.Repeat("x", int(max(p.filter.proof.maxSize, maxPathProofSize))+1))
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: h})
	if err != nil || d.Cost == 0 {
		t.Errorf("with a header over the proven size: cost %d, %v; want tracked", d.Cost, err)
	}
	// marshalJSON's estimate counts entries, its cost the output: never
	// proven. A body of many small values marshals to far more than its
	// largest value.
	e = newEngine(t, WithCostProof(), WithCostLimit(5000))
	var b strings.Builder
	b.WriteString(`{"object_kind":"note","l":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + strings.Repeat("x", 90) + `"`)
	}
	b.WriteString(`]}`)
	p = mustCompile(t, e, Rules{Filter: `body.marshalJSON().size() > 0`})
	_, err = e.Evaluate(context.Background(), p, Input{Body: []byte(b.String()), Header: pushHeader("Note Hook")})
	if KindOf(err) != KindLimit {
		t.Errorf("marshalJSON of a %d-byte body at a limit of 5000: %v, want the cost limit", b.Len(), err)
	}
	e = newEngine(t, WithCostProof())
	p = mustCompile(t, e, Rules{Filter: provableFilter})

	// Extensions of a type the walk cannot measure make it tracked.
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook"), Extensions: map[string]any{"x": struct{}{}}})
	if err != nil || d.Cost == 0 {
		t.Errorf("with unmeasurable extensions: cost %d, %v; want tracked", d.Cost, err)
	}
}

// pathProofExprs compute values the path proof must bound: concatenations
// of request lists and strings, macro results and their elements.
var pathProofExprs = []string{
	blogFilter,
	provableFilter,
	`body.commits.map(c, c.added + c.modified).map(l, l + l).exists(x, x.exists(f, (f + f + f).matches("a.*b.*c")))`,
	`body.commits.filter(c, c.added.size() > 0).map(c, c.message + c.message).exists(m, m.contains("zz"))`,
	`body.commits.exists_one(c, c.id.startsWith("b"))`,
	`[body.ref, body.before].map(s, s + s).all(s, s.size() > 0 && (s + s).endsWith("q"))`,
	`body.commits.all(c, (c.added + c.added + c.added + c.added).all(f, (f + f + f + f).contains("zz") == false))`,
	`(body.commits + body.commits).map(c, c.message).exists(m, m.matches("(a|b)*c"))`,
	`body.commits.map(c, [c.id, c.message, c.url]).exists(l, l.exists(s, s.contains("zz")))`,
	`body.commits.map(c, {"m": c.message + c.message}).exists(x, x.m.size() > 1000000)`,
	`has(body.commits) && body.commits[0].added.exists(f, f.startsWith("src/")) || header.canonical("X-Gitlab-Event") == "x"`,
	`body.ref.split("/").map(s, s.upperAscii()).join("-").size() > 0`,
	`header.canonical("x-big").contains("zz") || header.match("X-Gitlab-Event", "Push Hook")`,
	`header.exists(k, header[k].exists(v, v.matches("z+q")))`,
	`has(header.X) || header.canonical("X-Big").size() > 1000000`,
	`body.commits.all(c, c.added.all(f, header.canonical("X-Big") != f))`,
}

// pathProofBody is a push of n commits of m added paths of length l each,
// with messages of l characters.
func pathProofBody(t *testing.T, n, m, l int) []byte {
	t.Helper()
	commits := make([]any, n)
	for i := range commits {
		added := make([]any, m)
		for j := range added {
			added[j] = fmt.Sprintf("src/%0*d", max(l-4, 1), j)
		}
		commits[i] = map[string]any{
			"id": fmt.Sprintf("b%039d", i), "message": strings.Repeat("ab", l/2+1)[:l], "url": "https://gitlab.example.com/x",
			"added": added, "modified": []any{"README.md"}, "removed": []any{},
		}
	}
	body, err := json.Marshal(map[string]any{
		"object_kind": "push", "ref": "refs/heads/main", "before": strings.Repeat("1", 40), "after": strings.Repeat("2", 40),
		"checkout_sha": strings.Repeat("2", 40), "total_commits_count": n, "commits": commits,
		"project": map[string]any{"path_with_namespace": "g/p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestPathProofSound: over pushes from tiny to large and cost limits from
// tight to the default, an expression runs untracked only when its
// tracked cost is within proofMargin times the estimate that proved it,
// which is within the limit; so the proven engine fails with the cost
// limit exactly when tracking does.
func TestPathProofSound(t *testing.T) {
	untracked, limited := 0, 0
	for _, limit := range []uint64{2_000, 50_000, DefaultCostLimit} {
		tracked := newEngine(t, WithCostLimit(limit))
		proving := newEngine(t, WithCostLimit(limit), WithCostProof())
		for _, shape := range [][3]int{{1, 1, 5}, {3, 5, 20}, {3, 2, 94}, {20, 30, 60}, {5, 200, 10}, {2, 3, 3000}} {
			body := pathProofBody(t, shape[0], shape[1], shape[2])
			h := pushHeader("Push Hook")
			// A header value as large as the body's largest string, or
			// larger: what canonical returns is one of its items.
			h.Set("X-Big", strings.Repeat("ab", shape[2]))
			in := Input{Body: body, Header: h, RequestURL: "http://el/"}
			for _, expr := range pathProofExprs {
				want, wantErr := tracked.Evaluate(context.Background(), mustCompile(t, tracked, Rules{Value: expr}), in)
				var bound uint64
				ran := false
				proving.onUntracked = func(_ *compiled, est uint64) { bound, ran = est, true }
				got, err := proving.Evaluate(context.Background(), mustCompile(t, proving, Rules{Value: expr}), in)
				if (err == nil) != (wantErr == nil) || err != nil && KindOf(err) != KindOf(wantErr) {
					t.Fatalf("limit %d, shape %v, %s: error %v, tracked %v", limit, shape, expr, err, wantErr)
				}
				if err != nil {
					if KindOf(err) == KindLimit {
						limited++
					}
					if ran {
						t.Errorf("limit %d, shape %v, %s: failed (%v) after running untracked", limit, shape, expr, err)
					}
					continue
				}
				if string(got.Value) != string(want.Value) {
					t.Errorf("limit %d, shape %v, %s: value %s, tracked %s", limit, shape, expr, got.Value, want.Value)
				}
				if !ran {
					continue
				}
				untracked++
				if want.Cost > proofMargin*bound || proofMargin*bound > limit {
					t.Errorf("limit %d, shape %v, %s: ran untracked with actual cost %d, estimate %d",
						limit, shape, expr, want.Cost, bound)
				}
			}
		}
	}
	if untracked == 0 || limited == 0 {
		t.Fatalf("%d ran untracked, %d over the limit: the test checks nothing", untracked, limited)
	}
	t.Logf("%d evaluations ran untracked, %d stopped by the limit", untracked, limited)
}

func TestGrowthBound(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		expr   string
		growth uint64
	}{
		{blogFilter, 4}, // c.added + c.modified + c.removed; the map's accumulators are not counted
		{provableFilter, 1},
		{`body.commits.map(c, c.id + c.id).exists(s, s.size() > 3)`, 2},
		{`body.commits.filter(c, c.added.size() > 0).size() > 0`, 1},
		{`body.commits.exists_one(c, c.id == "x")`, 1},
		{`[body.ref + body.ref].all(a, [a + a].all(b, b.size() > 0))`, 4},
		{`body.ref.split("/").size() > 0`, 0},   // split builds a list
		{`body.ref.upperAscii().size() > 0`, 0}, // builds a string
		{`body.marshalJSON().size() > 0`, 0},    // builds a string
		{`body.commits.map(c, [c.id]).exists(l, l.size() > 0)`, 1},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			ast, iss := e.env.Compile(tc.expr)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			if got, _ := e.growthBound(ast); got != tc.growth {
				t.Errorf("growth %d, want %d", got, tc.growth)
			}
		})
	}
}

// TestPathProofConcurrent evaluates pushes of many size classes from
// several goroutines (for -race over the shared verdicts).
func TestPathProofConcurrent(t *testing.T) {
	e := newEngine(t, WithCostProof())
	p := mustCompile(t, e, Rules{Filter: blogFilter})
	var bodies [][]byte
	for n := 1; n <= 16; n *= 2 {
		bodies = append(bodies, pathProofBody(t, n, n, 8*n))
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 50 {
				_, err := e.Evaluate(context.Background(), p, Input{Body: bodies[(g+i)%len(bodies)], Header: pushHeader("Push Hook")})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(*p.filter.proof.paths.verdicts.Load()); n < 2 {
		t.Errorf("%d size classes remembered, want one per class seen", n)
	}
}

func TestPathWalk(t *testing.T) {
	body := map[string]any{
		"commits": []any{
			map[string]any{"added": []any{"a", "bbbb"}, "author": map[string]any{"name": "0123456789"}},
			map[string]any{"added": []any{"cc"}, "modified": []any{"x", "y", "z"}},
			"not a commit",
		},
		"ref": "refs/heads/main",
	}
	header := http.Header{"X-Gitlab-Event": {"Push Hook"}, "X-Many": {"1", "2", "3", "4", "5"}}
	for _, tc := range []struct {
		root any
		path []string
		want uint64
	}{
		{body, []string{"commits"}, 3},
		{body, []string{"ref"}, 15},
		{body, []string{"missing"}, 0},
		{body, []string{"ref", "x"}, 0},
		{body, []string{"commits", "@items", "added"}, 2},
		{body, []string{"commits", "@keys", "modified"}, 3},
		{body, []string{"commits", "@items", "added", "@items"}, 4},
		{body, []string{"commits", "@items"}, 12}, // the elements: two maps of 2 entries, a 12-byte string
		// On a map, @items stands for every nested value: the author's name too.
		{body["commits"].([]any)[0], []string{"@items"}, 10},
		{body["commits"].([]any)[0], []string{"@keys"}, 6},
		{body["commits"].([]any)[0], []string{"@values"}, 2},
		{body, []string{"@values"}, 15},
		{header, nil, 2},
		{header, []string{"X-Many"}, 5},
		{header, []string{"x-many"}, 0},  // CEL map keys are exact
		{header, []string{"@items"}, 14}, // keys, lists and their strings: "X-Gitlab-Event"
		{header, []string{"@values", "@items"}, 9},
		{header, []string{"@values"}, 5},
		{header, []string{"@keys"}, 14},
	} {
		w := pathWalk{budget: maxPathWalk}
		got, ok := w.measure(tc.root, tc.path)
		if !ok || got != tc.want {
			t.Errorf("%q: %d, %v; want %d", tc.path, got, ok, tc.want)
		}
	}
	w := pathWalk{budget: maxPathWalk}
	if _, ok := w.measure(map[string]any{"x": struct{}{}}, []string{"@items"}); ok {
		t.Error("a value of an unknown type was measured")
	}
	long := make([]any, maxPathWalk)
	for i := range long {
		long[i] = "p"
	}
	w = pathWalk{budget: maxPathWalk}
	if _, ok := w.measure(map[string]any{"l": long}, []string{"l", "@items"}); ok {
		t.Error("a walk over the budget was measured")
	}
}

// TestBlogFilterProvenOnPush holds BenchmarkDecision's case: the blog
// filter on push.json runs untracked under WithCostProof (by its paths),
// and a push of many large commits does not.
func TestBlogFilterProvenOnPush(t *testing.T) {
	e := newEngine(t, WithCostProof(), WithTimeout(time.Minute)) // -race is slow
	p := mustCompile(t, e, Rules{Filter: blogFilter})
	d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")})
	if err != nil || d.Cost != 0 {
		t.Fatalf("push.json: %+v, %v; want untracked", d, err)
	}
	d, err = e.Evaluate(context.Background(), p, Input{Body: pathProofBody(t, 20, 300, 200), Header: pushHeader("Push Hook")})
	if err != nil || d.Cost == 0 {
		t.Errorf("20 commits of 300 paths of 200 bytes: %+v, %v; want tracked", d, err)
	}
}

// TestCostProofShadowedRequest: a comprehension variable named body is not
// the request's body; an expression declaring one always runs tracked.
func TestCostProofShadowedRequest(t *testing.T) {
	e := newEngine(t, WithCostProof())
	for _, expr := range []string{
		`[body.ref + body.ref].exists(body, body.size() > 0)`,
		`body.commits.all(header, header.added.size() >= 0)`,
	} {
		p := mustCompile(t, e, Rules{Filter: expr})
		d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")})
		if err != nil || d.Cost == 0 {
			t.Errorf("%s: cost %d, %v; want tracked", expr, d.Cost, err)
		}
	}
	p := mustCompile(t, e, Rules{Filter: `body.commits.all(c, c.added.size() >= 0)`})
	if d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")}); err != nil || d.Cost != 0 {
		t.Errorf("without shadowing: cost %d, %v; want untracked", d.Cost, err)
	}
}

// TestPathProofVerdictsBounded: past maxVerdicts size classes, a request
// of a new class runs tracked instead of being estimated.
func TestPathProofVerdictsBounded(t *testing.T) {
	e := newEngine(t, WithCostProof())
	p := mustCompile(t, e, Rules{Filter: blogFilter})
	in := Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")}
	e.proofReady(p.filter)
	full := map[string]uint64{}
	for i := range maxVerdicts {
		full[fmt.Sprintf("other class %d", i)] = 0
	}
	p.filter.proof.paths.verdicts.Store(&full)
	d, err := e.Evaluate(context.Background(), p, in)
	if err != nil || d.Cost == 0 {
		t.Errorf("a new class past the bound: cost %d, %v; want tracked", d.Cost, err)
	}
	if n := len(*p.filter.proof.paths.verdicts.Load()); n != maxVerdicts {
		t.Errorf("%d classes remembered, want at most %d", n, maxVerdicts)
	}
}
