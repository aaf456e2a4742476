package celcompat_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// overlay renders expr on the payload through one side's overlay
// (harness.triggersOverlay, harness.cielOverlay): its JSON, or the failure
// and false.
func overlay(side func(request, string) (string, bool, error), expr string) (string, bool) {
	v, _, err := side(payloadRequest(), expr)
	if err != nil {
		return err.Error(), false
	}
	return v, true
}

// TestOverlayRendering records how Triggers renders overlay values into
// extensions (what TriggerBindings see) and checks celenv.ValueJSON renders
// the same.
func TestOverlayRendering(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		expr string
		want string // Triggers' rendering
	}{
		{`body.object_kind`, `"push"`},
		{`body.ref.split('/').last()`, `"JIRA-12_new"`},
		{`true`, `true`},
		{`body.commits.size() > 1`, `true`},
		{`42`, `42`},
		{`int(body.project_id) + 1`, `16`},
		{`body.project_id + 0.5`, `15.5`},
		{`9007199254740993`, `"9007199254740993"`},           // beyond 2^53: a decimal string, not a rounded number
		{`b'hello'`, `"aGVsbG8="`},                           // bytes become base64
		{`base64.decode(body.b64)`, `"aGVsbG8gd29ybGQ="`},    // ... including decoded base64
		{`string(base64.decode(body.b64))`, `"hello world"`}, // string() gives the text
		{`body.commits.map(c, c.id.truncate(8))`, `["b6568db1","da156088"]`},
		{`body.project`, `{"default_branch":"master","path_with_namespace":"mike/diaspora","web_url":"http://example.com/mike/diaspora"}`},
		{`{'n': 1, 'l': [1, 'a', true], 'm': {'x': b'y'}}`, `{"l":[1,"a",true],"m":{"x":"eQ=="},"n":1}`},
		{`body.html`, `"\u003cb\u003e\u0026\u003c/b\u003e"`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		// extensions.changed_files of a push is ciel's own (docs/extensions.md).
		{`extensions.changed_files.all.filterPaths(['app/**', '!**/*.md'])`, `["app/controller/application.rb"]`},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, ok := overlay(h.triggersOverlay, tc.expr)
			if !ok && !strings.Contains(tc.expr, "filterPaths") {
				t.Fatalf("Triggers failed: %s", got)
			}
			if ok {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Triggers renders (-recorded +now):\n%s", diff)
				}
			}
			got, ok = overlay(h.cielOverlay, tc.expr)
			if !ok {
				t.Fatalf("ciel failed: %s", got)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ValueJSON (-triggers +ciel):\n%s", diff)
			}
		})
	}
}

// TestOverlayRenderingDifferences pins the values Triggers cannot render
// (the request fails with Internal) and what ValueJSON does instead.
func TestOverlayRenderingDifferences(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		expr   string
		ciel   string
		cielOK bool
	}{
		{`1u`, `1`, true},
		{`null`, `null`, true},
		{`body.empty.first()`, `null`, true},
		{`timestamp('2024-01-01T00:00:00Z')`, `rendering a CEL google.protobuf.Timestamp as JSON: not a JSON value`, false},
		{`duration('1s')`, `rendering a CEL google.protobuf.Duration as JSON: not a JSON value`, false},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			msg, ok := overlay(h.triggersOverlay, tc.expr)
			if ok {
				t.Errorf("Triggers now renders %s as %s: update the recorded difference", tc.expr, msg)
			}
			got, ok := overlay(h.cielOverlay, tc.expr)
			if ok != tc.cielOK || !strings.Contains(got, tc.ciel) {
				t.Errorf("ciel: %q, %v; want %q, %v", got, ok, tc.ciel, tc.cielOK)
			}
		})
	}
}
