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

// TestHostileGlobStops: with the default cost limit, the call is refused
// before it matches; with no effective cost limit, the evaluation deadline
// cuts the matching loop (the match would otherwise end true after
// seconds).
func TestHostileGlobStops(t *testing.T) {
	path, pattern := hostileGlob()
	body, _ := json.Marshal(map[string]any{"object_kind": "note", "path": path, "pattern": pattern})
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"at the cost limit", nil, "cost limit"},
		{"at the deadline", []Option{WithCostLimit(math.MaxUint64 / 2), WithTimeout(200 * time.Millisecond)}, "deadline"},
	} {
		e := newEngine(t, tc.opts...)
		for _, filter := range hostileFilters {
			t.Run(tc.name+"/"+filter, func(t *testing.T) {
				p := mustCompile(t, e, Rules{Filter: filter})
				start := time.Now()
				_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Note Hook")})
				t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
				if KindOf(err) != KindLimit || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v (kind %v), want the %s", err, KindOf(err), tc.want)
				}
			})
		}
	}
}
