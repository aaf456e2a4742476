package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// FuzzEvaluate feeds arbitrary expressions and bodies through the engine:
// it must never panic, and every failure must be a classified error.
func FuzzEvaluate(f *testing.F) {
	seeds := []struct{ expr, body, event string }{
		{blogFilter, string(fixture(f, "push.json")), "Push Hook"},
		{`extensions.changed_files.all.matchesAny(["src/**", "!**/*.md"])`, string(fixture(f, "truncated_push.json")), "Push Hook"},
		{`extensions.push.semver.major >= 1`, string(fixture(f, "tag_push.json")), "Tag Push Hook"},
		{`body.object_kind.truncate(3) + string(size(header))`, `{"object_kind":"note"}`, "Note Hook"},
		{`parseJSON(body.x).a`, `{"x":"{\"a\":1}"}`, "System Hook"},
		{`body.commits[0].added.filterPaths(["**"])`, `{"object_kind":"push","commits":[{"added":["a"]}]}`, "Push Hook"},
		{`1/0 == 1`, `{}`, ""},
	}
	for _, s := range seeds {
		f.Add(s.expr, s.body, s.event)
	}
	e, err := New(WithCostLimit(100_000), WithTimeout(200*time.Millisecond), WithMaxBodyBytes(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	// An engine with the worst-case check, whose rejections walk the
	// expression to name its most expensive part.
	bounded, err := New(WithMaxEstimatedCost(1000))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr, body, event string) {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("hang: expr=%q body=%q event=%q", expr, body, event))
			}
		}()
		if _, err := bounded.Compile(Rules{Value: expr}); err != nil {
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile(%q) with the worst-case check: error %v is not a *CompileError", expr, err)
			}
		}
		for _, r := range []Rules{{Filter: expr}, {Value: expr}, {Overlays: []Overlay{{Key: "k", Expression: expr}}}} {
			p, err := e.Compile(r)
			if err != nil {
				var ce *CompileError
				if !errors.As(err, &ce) {
					t.Fatalf("Compile(%q) error %v is not a *CompileError", expr, err)
				}
				continue
			}
			h := http.Header{}
			h.Set("X-Gitlab-Event", event)
			d, err := e.Evaluate(context.Background(), p, Input{Body: []byte(body), Header: h})
			if err != nil {
				if KindOf(err) == KindInternal {
					t.Fatalf("Evaluate(%q, %q): internal error %v", expr, body, err)
				}
				continue
			}
			if d == nil || d.Event == nil {
				t.Fatalf("Evaluate(%q) returned no decision and no error", expr)
			}
		}
	})
}
