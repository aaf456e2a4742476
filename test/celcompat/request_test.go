package celcompat_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

// TestRequestDifferences pins what ciel refuses in a request that Triggers
// evaluates (docs/cel-reference.md, "Differences from Triggers"): ciel
// decodes the body within bounds and types a push before any expression
// runs; Triggers unmarshals whatever JSON object it gets, and an empty body
// as {}.
func TestRequestDifferences(t *testing.T) {
	h := newHarness(t)
	push := http.Header{"X-Gitlab-Event": {"Push Hook"}}
	tests := []struct {
		name     string
		req      request
		expr     string
		triggers string // Triggers' rendered value
		ciel     string // ciel's error
	}{
		{"empty body", request{body: nil, header: http.Header{"X-Gitlab-Event": {"Note Hook"}}, url: requestURL},
			`body`, `{}`, "empty input"},
		{"push with a field of the wrong type", request{body: []byte(`{"object_kind":"push","ref":5,"before":"0","after":"1"}`), header: push, url: requestURL},
			`body.ref`, `5`, "ref"},
		{"branch push sent as a tag push", request{body: []byte(payload), header: http.Header{"X-Gitlab-Event": {"Tag Push Hook"}}, url: requestURL},
			`body.object_kind`, `"push"`, "Tag Push Hook"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := h.runTriggers(tc.req, tc.expr)
			if !got.Compiled || got.Err || got.JSON != tc.triggers {
				t.Errorf("Triggers: %+v (%s), want the value %s", got, msg, tc.triggers)
			}
			got, msg = h.runCiel(tc.req, tc.expr)
			if !got.Err || !strings.Contains(msg, tc.ciel) {
				t.Errorf("ciel: %+v (%s), want an error mentioning %q", got, msg, tc.ciel)
			}
		})
	}
}

// TestPlanningErrorsAtLoad pins where an expression that can never succeed
// fails: a constant that does not convert or a regular expression literal
// that does not compile fails every Triggers request ("failed to create a
// Program", Triggers compiles per request); ciel refuses it when the rules
// are loaded.
func TestPlanningErrorsAtLoad(t *testing.T) {
	h := newHarness(t)
	req := payloadRequest()
	for _, expr := range []string{`double('README.md')`, `int('x') + 1`, `body.ref.matches('[')`} {
		t.Run(expr, func(t *testing.T) {
			resp := h.triggersProcess(h.triggersRequest(t, req), expr)
			if resp.Continue || !strings.Contains(resp.Status.Message, "failed to create a Program") {
				t.Errorf("Triggers: %v %q, want a failed request", resp.Continue, resp.Status.Message)
			}
			_, err := h.eng.Compile(engine.Rules{Overlays: []engine.Overlay{{Key: "v", Expression: expr}}})
			if engine.KindOf(err) != engine.KindCompile {
				t.Errorf("ciel: Compile error %v, want a compile error", err)
			}
		})
	}
}
