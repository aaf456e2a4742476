package policy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// Request is a webhook read from a file.
type Request struct {
	Header http.Header
	Body   []byte
	URL    string
}

// ParseRequest reads a raw HTTP request as Tekton's cel-eval reads them:
// a request line, headers, a blank line and the body. Unlike net/http it
// tolerates a wrong or missing Content-Length (files are edited by hand):
// the body is everything after the blank line. Bare LF line ends are
// accepted.
func ParseRequest(data []byte) (*Request, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	line, err := r.ReadLine()
	if err != nil {
		return nil, fmt.Errorf("reading the request line: %w", err)
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || !strings.HasPrefix(proto, "HTTP/") {
		return nil, fmt.Errorf("reading the request line %q: want METHOD TARGET HTTP/1.1", truncate(line, 80))
	}
	mh, err := r.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading the headers: %w", err)
	}
	body, err := io.ReadAll(r.R)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	h := http.Header(mh)
	url := target
	if !strings.Contains(target, "://") {
		host := h.Get("Host")
		if host == "" {
			host = "localhost"
		}
		url = "http://" + host + target
	}
	return &Request{Header: h, Body: bytes.TrimRight(body, "\r\n"), URL: url}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// ReadWebhook reads the webhook of in from a file, as cel-eval's -r and
// --body and a test case's request and payload do: request, when set, is
// a raw HTTP request (its headers, body and URL replace in's), else body
// is a JSON body file. It reads nothing when both are empty.
func ReadWebhook(in *engine.Input, request, body string) error {
	switch {
	case request != "":
		data, err := os.ReadFile(request)
		if err != nil {
			return fmt.Errorf("reading the request: %w", err)
		}
		req, err := ParseRequest(data)
		if err != nil {
			return fmt.Errorf("%s: %w", request, err)
		}
		in.Header, in.Body, in.RequestURL = req.Header, req.Body, req.URL
	case body != "":
		data, err := os.ReadFile(body)
		if err != nil {
			return fmt.Errorf("reading the body: %w", err)
		}
		in.Body = data
	}
	return nil
}

// Input builds the engine input of case c of p: its request or payload
// file (relative to the policy file) or inline body, headers and
// changed-files override.
func (p *Policy) Input(c Case) (engine.Input, error) {
	in := engine.Input{Header: http.Header{}, RequestURL: "http://localhost/", Body: c.Body}
	relative := func(file string) string {
		if file == "" {
			return ""
		}
		return filepath.Join(filepath.Dir(p.File), file)
	}
	if err := ReadWebhook(&in, relative(c.Request), relative(c.Payload)); err != nil {
		return in, err
	}
	if c.Event != "" {
		in.Header.Set("X-Gitlab-Event", c.Event)
	}
	for k, v := range c.Headers {
		in.Header.Set(k, v)
	}
	if c.ChangedFiles != nil {
		in.ChangedFiles = Override(*c.ChangedFiles)
	}
	return in, nil
}

// Override is the changed files source of cel-eval --files and of test
// cases: the paths given, as gitlab.OverrideChangedFiles lists them, for
// pushes and for merge requests (their diff and their update alike).
func Override(paths []string) gitlab.ChangedFilesSource {
	return gitlab.FixedSource{Files: gitlab.OverrideChangedFiles(paths)}
}

// Decide runs the policy on one input: an event type the policy does not
// accept, or a merge request from a fork the policy does not allow
// (ForkRefusal), gives Continue false and a reason, without evaluating
// anything; otherwise the engine decides. reason explains a false decision.
func (p *Policy) Decide(ctx context.Context, eng *engine.Engine, in engine.Input) (d *engine.Decision, reason string, err error) {
	if ev := in.Header.Get("X-Gitlab-Event"); !p.AllowsEvent(ev) {
		return &engine.Decision{}, fmt.Sprintf("event type %q is not one of the policy's eventTypes %q", ev, p.EventTypes), nil
	}
	if in.Event == nil {
		if in.Event, err = eng.Decode(in); err != nil {
			return nil, "", err
		}
	}
	if reason := ForkRefusal(in.Event, p.AllowForks); reason != "" {
		return &engine.Decision{Event: in.Event, MergeRequest: in.Event.MergeRequest.Facts().Map()}, reason, nil
	}
	d, err = eng.Evaluate(ctx, p.Program, in)
	if err != nil {
		return nil, "", err
	}
	if !d.Continue {
		reason = fmt.Sprintf("policy %s: the filter is false", p.Name)
	}
	return d, reason, nil
}

// ForkRefusal says why a merge request event from a fork must not be
// built: its source project's code would run with the target project's
// credentials (docs/security.md). It returns "" for any other event, or
// when allow is set (a policy's allowForks, the interceptor's allowForks
// param).
func ForkRefusal(ev *gitlab.Event, allow bool) string {
	if allow || ev == nil || ev.MergeRequest == nil {
		return ""
	}
	return ev.MergeRequest.Facts().ForkRefusal()
}

// CaseResult is the outcome of one test case.
type CaseResult struct {
	Policy string
	Case   string
	Pass   bool
	// Problem says why a case failed.
	Problem  string
	Decision *engine.Decision
}

// RunCases runs every test case of p through eng.
func (p *Policy) RunCases(ctx context.Context, eng *engine.Engine) []CaseResult {
	out := make([]CaseResult, 0, len(p.Tests))
	for _, c := range p.Tests {
		r := CaseResult{Policy: p.Name, Case: c.Name}
		r.Problem = p.runCase(ctx, eng, c, &r)
		r.Pass = r.Problem == ""
		out = append(out, r)
	}
	return out
}

func (p *Policy) runCase(ctx context.Context, eng *engine.Engine, c Case, r *CaseResult) string {
	in, err := p.Input(c)
	if err != nil {
		return err.Error()
	}
	d, reason, err := p.Decide(ctx, eng, in)
	if c.Expect.Error != "" {
		switch {
		case err == nil:
			return fmt.Sprintf("want an error containing %q, got decision %v", c.Expect.Error, d.Continue)
		case !strings.Contains(err.Error(), c.Expect.Error):
			return fmt.Sprintf("want an error containing %q, got %v", c.Expect.Error, err)
		}
		return ""
	}
	if err != nil {
		return "unexpected error: " + err.Error()
	}
	r.Decision = d
	if want := *c.Expect.Continue; d.Continue != want {
		return fmt.Sprintf("decision %v, want %v", d.Continue, want)
	}
	if c.Expect.Reason != "" && !strings.Contains(reason, c.Expect.Reason) {
		return fmt.Sprintf("reason %q, want one containing %q", reason, c.Expect.Reason)
	}
	if len(c.Expect.Overlays) > 0 {
		got := map[string]any{}
		for _, o := range d.Overlays {
			got[o.Key] = o.Value
		}
		want, err := normalize(c.Expect.Overlays)
		if err != nil {
			return err.Error()
		}
		for k, w := range want {
			g, ok := got[k]
			if !ok {
				return fmt.Sprintf("overlay %q missing", k)
			}
			if !reflect.DeepEqual(w, g) {
				wj, _ := json.Marshal(w)
				gj, _ := json.Marshal(g)
				return fmt.Sprintf("overlay %q: got %s, want %s", k, gj, wj)
			}
		}
	}
	return ""
}

// normalize turns YAML-decoded values into what a JSON round trip gives,
// the form of overlay values.
func normalize(m map[string]any) (map[string]any, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("reading expected overlays: %w", err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("reading expected overlays: %w", err)
	}
	return out, nil
}
