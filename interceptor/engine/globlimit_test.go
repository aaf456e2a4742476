package engine

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// hostileGlob is a 1 MiB path and a 1 KiB pattern whose automaton keeps
// every position alive at every character: the worst case of pathglob
// (about 5×10^8 automaton steps). Before the path functions looked at the
// cost limit and the context, one such glob ran 10.9-27 s past the 1 s
// deadline (issue 21, item 9).
func hostileGlob() (path, pattern string) {
	return strings.Repeat("a", 1<<20), strings.Repeat("*a", 512)
}

var hostileFilters = []string{
	`body.path.glob(body.pattern)`,
	`[body.path].matchesAny([body.pattern])`,
	`body.path.matchesAny([body.pattern])`,
	`size([body.path].filterPaths([body.pattern])) > 0`,
}

// TestHostileGlobStopsAtCostLimit: with the default cost limit, the call is
// refused before it matches.
func TestHostileGlobStopsAtCostLimit(t *testing.T) {
	path, pattern := hostileGlob()
	body, _ := json.Marshal(map[string]any{"object_kind": "note", "path": path, "pattern": pattern})
	e := newEngine(t)
	for _, filter := range hostileFilters {
		t.Run(filter, func(t *testing.T) {
			p := mustCompile(t, e, Rules{Filter: filter})
			start := time.Now()
			_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Note Hook")})
			t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "cost limit") {
				t.Errorf("error %v (kind %v), want the cost limit", err, KindOf(err))
			}
		})
	}
}

// TestHostileGlobStopsAtDeadline: with no effective cost limit, the
// evaluation deadline cuts the matching loop (the match would otherwise end
// true after seconds).
func TestHostileGlobStopsAtDeadline(t *testing.T) {
	path, pattern := hostileGlob()
	body, _ := json.Marshal(map[string]any{"object_kind": "note", "path": path, "pattern": pattern})
	e := newEngine(t, WithCostLimit(math.MaxUint64/2), WithTimeout(200*time.Millisecond))
	for _, filter := range hostileFilters {
		t.Run(filter, func(t *testing.T) {
			p := mustCompile(t, e, Rules{Filter: filter})
			start := time.Now()
			_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Note Hook")})
			t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "deadline") {
				t.Errorf("error %v (kind %v), want the deadline", err, KindOf(err))
			}
		})
	}
}
