package policy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.New()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// writeFile writes content to dir/name and returns the file's path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseRejects(t *testing.T) {
	eng := newEngine(t)
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "name: a\nfilter: 'true'\noverlay: []\n", `unknown field "overlay"`},
		{"bad name", "name: Not_A_Label\nfilter: 'true'\n", "DNS label"},
		{"nothing to do", "name: a\n", "neither a filter nor overlays"},
		{"broken CEL", "name: a\nfilter: 'body.ref =='\n", "1:12"},
		{"case without input", "name: a\nfilter: 'true'\ntests:\n  - name: x\n    expect: {continue: true}\n", "exactly one of request, payload, body"},
		{"case without expectation", "name: a\nfilter: 'true'\ntests:\n  - name: x\n    body: {}\n", "expect.continue or expect.error"},
		{"empty file", "  \n", "empty policy file"},
		{"wrong type", "name: a\nfilter: 'true'\neventTypes: Push Hook\n", "eventTypes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(eng, "p.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "p.yaml") {
				t.Errorf("error %v, want one naming p.yaml and %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(eng, "big.yaml", make([]byte, MaxFileBytes+1)); err == nil {
		t.Error("an oversized policy was accepted")
	}
}

func TestLoadDir(t *testing.T) {
	eng := newEngine(t)
	dir := t.TempDir()
	write := func(name, content string) { writeFile(t, dir, name, content) }
	write("a.yaml", "name: a\neventTypes: [Push Hook]\nfilter: 'true'\n")
	write("kustomization.yaml", "resources: []\n")
	write("notes.txt", "not a policy")
	write(".hidden.yaml", "garbage: [")
	set, err := LoadDir(eng, dir)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get("a")
	if !ok || strings.Join(set.Names(), ",") != "a" || !p.AllowsEvent("Push Hook") || p.AllowsEvent("Tag Push Hook") {
		t.Errorf("set %v", set.Names())
	}
	write("b.yaml", "name: a\nfilter: 'false'\n")
	write("c.yaml", "name: c\nfilter: 'nope('\n")
	_, err = LoadDir(eng, dir)
	if err == nil || !strings.Contains(err.Error(), "also defined in") || !strings.Contains(err.Error(), "c.yaml") {
		t.Errorf("error %v, want every problem listed", err)
	}
	if _, err := LoadDir(eng, t.TempDir()); err == nil {
		t.Error("an empty directory loaded")
	}
}

func TestParseRequest(t *testing.T) {
	for name, raw := range map[string]string{
		"crlf, right length": "POST /hook HTTP/1.1\r\nHost: el:8080\r\nX-Gitlab-Event: Push Hook\r\nContent-Length: 2\r\n\r\n{}",
		"lf, wrong length":   "POST /hook HTTP/1.1\nHost: el:8080\nX-Gitlab-Event: Push Hook\nContent-Length: 999\n\n{}\n",
		"no length":          "POST /hook HTTP/1.1\nHost: el:8080\nX-Gitlab-Event: Push Hook\n\n{}",
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ParseRequest([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Body) != "{}" || r.Header.Get("X-Gitlab-Event") != "Push Hook" || r.URL != "http://el:8080/hook" {
				t.Errorf("got %q %v %q", r.Body, r.Header, r.URL)
			}
		})
	}
	if _, err := ParseRequest([]byte("{}")); err == nil {
		t.Error("a body without a request line was accepted")
	}
}

// TestReadWebhook reads the webhook files of cel-eval and of test cases.
func TestReadWebhook(t *testing.T) {
	dir := t.TempDir()
	request := writeFile(t, dir, "push.http", "POST /hook HTTP/1.1\nHost: el:8080\nX-Gitlab-Event: Push Hook\n\n{\"a\":1}")
	body := writeFile(t, dir, "push.json", `{"b":2}`)
	bad := writeFile(t, dir, "bad.http", "{}")
	tests := []struct {
		name, request, body string
		wantBody, wantURL   string
		wantEvent, wantErr  string
	}{
		{name: "request", request: request, wantBody: `{"a":1}`, wantURL: "http://el:8080/hook", wantEvent: "Push Hook"},
		{name: "body", body: body, wantBody: `{"b":2}`, wantURL: "http://localhost/"},
		{name: "neither reads nothing", wantBody: "inline", wantURL: "http://localhost/"},
		{name: "missing request", request: filepath.Join(dir, "none.http"), wantErr: "reading the request: "},
		{name: "missing body", body: filepath.Join(dir, "none.json"), wantErr: "reading the body: "},
		{name: "not a request", request: bad, wantErr: bad + ": reading the request line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := engine.Input{Header: http.Header{}, RequestURL: "http://localhost/", Body: []byte("inline")}
			err := ReadWebhook(&in, tc.request, tc.body)
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if err == nil && (string(in.Body) != tc.wantBody || in.RequestURL != tc.wantURL || in.Header.Get("X-Gitlab-Event") != tc.wantEvent) {
				t.Errorf("got body %q, URL %q, event %q", in.Body, in.RequestURL, in.Header.Get("X-Gitlab-Event"))
			}
		})
	}
}
