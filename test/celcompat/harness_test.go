package celcompat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	tcel "github.com/tektoncd/triggers/pkg/interceptors/cel"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

// request is one webhook, as both interceptors receive it.
type request struct {
	body   []byte
	header http.Header
	url    string
	// ext is what earlier interceptors added (JSON values).
	ext map[string]any
}

// input is req as ciel's engine receives it.
func (req request) input() engine.Input {
	return engine.Input{Body: req.body, Header: req.header, RequestURL: req.url, Extensions: req.ext, Namespace: namespace}
}

// harness evaluates expressions in Tekton Triggers' CEL interceptor (its
// Process, as an EventListener calls it) and in ciel's engine (Compile and
// Evaluate, as ciel's interceptor calls them).
type harness struct {
	triggers *tcel.InterceptorImpl
	eng      *engine.Engine
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	// The evaluation deadline is wall time, which a loaded machine (and
	// the type probe, which evaluates an expression up to twelve times)
	// can exhaust: the comparison is of semantics, so it is raised here.
	// The cost limit stays the default. engine's TestDeadline holds the
	// deadline.
	eng, err := engine.New(engine.WithSecretGetter(cielSecrets{}), engine.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{triggers: tcel.NewInterceptor(triggersSecrets{}), eng: eng}
}

// outcome is what one side made of an expression: whether it compiled,
// whether it failed, the CEL type of the value and the value as the
// interceptor renders it into extensions (JSON). A value Triggers cannot
// render (uint, null, timestamp, duration, type; see
// TestOverlayRenderingDifferences) is compared through its type and
// string().
type outcome struct {
	Compiled bool
	Err      bool
	Type     string
	JSON     string
}

// typeProbe is a CEL expression naming the type of expr, evaluated by both
// sides (Triggers declares no function returning a type's name).
func typeProbe(expr string) string {
	var b strings.Builder
	for _, t := range []string{"bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type",
		"google.protobuf.Timestamp", "google.protobuf.Duration", "type"} {
		b.WriteString("type(" + expr + ") == " + t + " ? '" + t + "' : ")
	}
	b.WriteString("'other'")
	return b.String()
}

// valueExpr is the expression whose JSON rendering is compared, by type.
func valueExpr(expr, typ string) (string, bool) {
	switch typ {
	case "null_type", "type", "other":
		return "", false
	case "uint", "google.protobuf.Timestamp", "google.protobuf.Duration":
		return "string(" + expr + ")", true
	}
	return expr, true
}

// run evaluates expr on one side: overlay(expr) returns the rendered JSON,
// whether the expression compiled, and the error message.
func run(expr string, overlay func(string) (string, bool, error)) (outcome, string) {
	typ, compiled, err := overlay(typeProbe(expr))
	if !compiled {
		// Compile the expression alone: the probe must not hide a
		// compile error behind its own.
		if _, compiled, err = overlay(expr); !compiled {
			return outcome{}, err.Error()
		}
	}
	if err != nil {
		return outcome{Compiled: true, Err: true}, err.Error()
	}
	var name string
	if err := json.Unmarshal([]byte(typ), &name); err != nil {
		return outcome{Compiled: true, Err: true}, "reading the type: " + err.Error()
	}
	o := outcome{Compiled: true, Type: name}
	ve, ok := valueExpr(expr, name)
	if !ok {
		return o, ""
	}
	v, _, err := overlay(ve)
	if err != nil {
		o.Err = true
		return o, err.Error()
	}
	o.JSON = v
	return o, ""
}

// runTriggers evaluates expr in Triggers' interceptor (triggersOverlay).
func (h *harness) runTriggers(req request, expr string) (outcome, string) {
	return run(expr, func(e string) (string, bool, error) { return h.triggersOverlay(req, e) })
}

// triggersOverlay evaluates expr on req in Triggers' interceptor as the
// overlay of key v, whose value is read back from the response's
// extensions: its JSON, whether it compiled, and the failure.
func (h *harness) triggersOverlay(req request, expr string) (string, bool, error) {
	resp := h.triggersProcess(req, expr)
	if !resp.Continue {
		msg := resp.Status.Message
		// Triggers compiles for each request: a program it cannot plan
		// (a constant that does not convert, a bad regular expression
		// literal) fails every request; ciel refuses it at load.
		compiled := !strings.Contains(msg, "failed to parse expression") && !strings.Contains(msg, "check failed") &&
			!strings.Contains(msg, "failed to create a Program")
		return "", compiled, &statusError{msg}
	}
	b, err := json.Marshal(resp.Extensions["v"])
	if err != nil {
		return "", true, err
	}
	return string(b), true, nil
}

// triggersProcess sends req to Triggers' interceptor with expr as the
// overlay of key v.
func (h *harness) triggersProcess(req request, expr string) *triggersv1.InterceptorResponse {
	return h.triggers.Process(context.Background(), &triggersv1.InterceptorRequest{
		Body:              string(req.body),
		Header:            req.header,
		Extensions:        req.ext,
		InterceptorParams: map[string]any{"overlays": []tcel.Overlay{{Key: "v", Expression: expr}}},
		Context:           &triggersv1.TriggerContext{EventURL: req.url, EventID: "1", TriggerID: "namespaces/" + namespace + "/triggers/build"},
	})
}

// runCiel evaluates expr in ciel's engine (cielOverlay).
func (h *harness) runCiel(req request, expr string) (outcome, string) {
	return run(expr, func(e string) (string, bool, error) { return h.cielOverlay(req, e) })
}

// cielOverlay evaluates expr on req in ciel's engine as the overlay of
// key v, compiled and evaluated as the interceptor does: its JSON, through
// the same round trip as Triggers' extensions map, whether it compiled,
// and the failure.
func (h *harness) cielOverlay(req request, expr string) (string, bool, error) {
	p, err := h.eng.Compile(engine.Rules{Overlays: []engine.Overlay{{Key: "v", Expression: expr}}})
	if err != nil {
		return "", false, err
	}
	d, err := h.eng.Evaluate(context.Background(), p, req.input())
	if err != nil {
		return "", true, err
	}
	var v any
	if err := json.Unmarshal(d.Overlays[0].JSON, &v); err != nil {
		return "", true, fmt.Errorf("overlay %s = %s: not JSON: %w", expr, d.Overlays[0].JSON, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", true, err
	}
	return string(b), true, nil
}

// triggersRequest is req as Triggers must see it to see what ciel's
// expressions see: ciel adds extensions.push and extensions.changed_files
// to pushes (docs/extensions.md), Triggers receives them from an earlier
// interceptor, as JSON.
func (h *harness) triggersRequest(t testing.TB, req request) request {
	t.Helper()
	p, err := h.eng.Compile(engine.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.eng.Evaluate(context.Background(), p, req.input())
	if err != nil {
		t.Fatal(err)
	}
	ext := map[string]any{}
	for k, v := range req.ext {
		ext[k] = v
	}
	for k, v := range d.Extensions {
		ext[k] = v
	}
	b, err := json.Marshal(ext)
	if err != nil {
		t.Fatal(err)
	}
	out := req
	out.ext = map[string]any{}
	if err := json.Unmarshal(b, &out.ext); err != nil {
		t.Fatal(err)
	}
	return out
}

type statusError struct{ msg string }

func (e *statusError) Error() string { return e.msg }
