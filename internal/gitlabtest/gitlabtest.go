// Package gitlabtest is an in-process GitLab commit status API for tests:
// POST /api/v4/projects/:id/statuses/:sha and
// GET /api/v4/projects/:id/repository/commits/:sha/statuses, recording every
// call and following GitLab's rules for external commit statuses (see
// Ci::CreateCommitStatusService):
//
//   - a pending or running status with the same project, commit, ref and
//     name is updated; otherwise a new status is created;
//   - an update that the state machine forbids is answered 400 "Cannot
//     transition status via :event from :state", as GitLab does when the
//     same pending or running state is posted twice;
//   - description and target_url longer than 255 characters are refused.
//
// Failures can be scripted with FailNext. It also serves the merge request
// diffs and repository compare APIs (repository.go), paged as GitLab pages
// them, counting every request.
package gitlabtest

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Call is one POST to the statuses endpoint.
type Call struct {
	ProjectID   string
	SHA         string
	State       string
	Ref         string
	Name        string
	Description string
	TargetURL   string
	// Code is the HTTP status the server answered.
	Code int
}

// Status is a stored commit status.
type Status struct {
	ID          int64
	ProjectID   string
	SHA         string
	Ref         string
	Name        string
	State       string
	Description string
	TargetURL   string
}

// Server is a fake GitLab. Create it with NewServer; URL is its base URL.
type Server struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	calls    []Call
	statuses []*Status
	failures []failure
	changed  chan struct{}
	nextID   int64

	mrDiffs         map[string][]Diff
	compares        map[string][]Diff
	mrDiffRequests  int
	compareRequests int
}

type failure struct {
	code  int
	body  string
	delay time.Duration
}

var (
	postRE = regexp.MustCompile(`^/api/v4/projects/([^/]+)/statuses/([0-9a-fA-F]+)$`)
	listRE = regexp.MustCompile(`^/api/v4/projects/([^/]+)/repository/commits/([0-9a-fA-F]+)/statuses$`)
)

// NewServer starts a fake GitLab accepting token as PRIVATE-TOKEN. It is
// closed when the test ends.
func NewServer(t interface{ Cleanup(func()) }, token string) *Server {
	return start(t, token, httptest.NewServer)
}

// NewTLSServer is NewServer over HTTPS, with a certificate for 127.0.0.1
// that Client() trusts (CAFile writes it for a client's --ca-file).
func NewTLSServer(t interface{ Cleanup(func()) }, token string) *Server {
	return start(t, token, httptest.NewTLSServer)
}

// NewServerOn is NewTLSServer on the listener l (an address other hosts
// reach, e.g. a cluster's node address) with the certificates of cfg. git,
// if not nil, serves every path with a ".git/" segment (clones), as a
// GitLab serves its repositories on its own host.
func NewServerOn(t interface{ Cleanup(func()) }, token string, l net.Listener, cfg *tls.Config, git http.Handler) *Server {
	return start(t, token, func(h http.Handler) *httptest.Server {
		if git != nil {
			api := h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, ".git/") {
					git.ServeHTTP(w, r)
					return
				}
				api.ServeHTTP(w, r)
			})
		}
		srv := httptest.NewUnstartedServer(h)
		srv.Listener.Close()
		srv.Listener, srv.TLS = l, cfg
		srv.StartTLS()
		return srv
	})
}

// start runs a fake GitLab on the server serve returns for its handler,
// closed when the test ends.
func start(t interface{ Cleanup(func()) }, token string, serve func(http.Handler) *httptest.Server) *Server {
	s := &Server{token: token, changed: make(chan struct{})}
	s.Server = serve(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// CAFile writes the certificate of a TLS test server as a PEM file in a
// temporary directory of the test and returns its path, for a client's CA
// file option.
func CAFile(t testing.TB, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// FailNext makes the next len(codes) POSTs answer these HTTP codes with a
// generic error body, without storing anything.
func (s *Server) FailNext(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range codes {
		s.failures = append(s.failures, failure{code: c, body: `{"message":"scripted failure"}`})
	}
}

// StallNext makes the next POST wait d before answering normally.
func (s *Server) StallNext(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, failure{delay: d})
}

// Calls returns every POST received so far, failed ones included.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Accepted returns the POSTs that changed a status (answered 201).
func (s *Server) Accepted() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.Code == http.StatusCreated {
			out = append(out, c)
		}
	}
	return out
}

// Statuses returns the stored statuses, oldest first.
func (s *Server) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.statuses))
	for _, st := range s.statuses {
		out = append(out, *st)
	}
	return out
}

// Changed returns a channel closed at the next received POST.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Private-Token") != s.token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
		return
	}
	if s.serveRepository(w, r) {
		return
	}
	if m := listRE.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
		s.list(w, m[1], m[2], r.URL.Query())
		return
	}
	m := postRE.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodPost {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "404 Not Found"})
		return
	}
	c, err := decode(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	c.ProjectID, c.SHA = m[1], m[2]

	s.mu.Lock()
	var f *failure
	if len(s.failures) > 0 {
		f = &s.failures[0]
		s.failures = s.failures[1:]
	}
	s.mu.Unlock()
	if f != nil && f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
		}
		f = nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
	}()
	if f != nil {
		c.Code = f.code
		s.calls = append(s.calls, c)
		w.Header().Set("Content-Type", "application/json")
		if f.code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(f.code)
		io.WriteString(w, f.body)
		return
	}
	code, body := s.apply(c)
	c.Code = code
	s.calls = append(s.calls, c)
	writeJSON(w, code, body)
}

func (s *Server) apply(c Call) (int, any) {
	switch c.State {
	case "pending", "running", "success", "failed", "canceled", "skipped":
	default:
		return http.StatusBadRequest, map[string]string{"error": "state does not have a valid value"}
	}
	if utf8.RuneCountInString(c.Description) > 255 || utf8.RuneCountInString(c.TargetURL) > 255 || utf8.RuneCountInString(c.Ref) > 255 {
		return http.StatusBadRequest, map[string]any{"message": map[string][]string{"description": {"is too long (maximum is 255 characters)"}}}
	}
	if c.Name == "" {
		c.Name = "default"
	}
	var cur *Status
	for _, st := range s.statuses {
		if st.ProjectID == c.ProjectID && st.SHA == c.SHA && st.Ref == c.Ref && st.Name == c.Name &&
			(st.State == "pending" || st.State == "running") {
			cur = st
		}
	}
	if cur == nil {
		s.nextID++
		cur = &Status{ID: s.nextID, ProjectID: c.ProjectID, SHA: c.SHA, Ref: c.Ref, Name: c.Name, State: "created"}
		s.statuses = append(s.statuses, cur)
	}
	if event, ok := transition(cur.State, c.State); !ok {
		return http.StatusBadRequest, map[string]string{"message": fmt.Sprintf(
			"Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\")", event, cur.State, event)}
	}
	cur.State = c.State
	if c.Description != "" {
		cur.Description = c.Description
	}
	if c.TargetURL != "" {
		cur.TargetURL = c.TargetURL
	}
	return http.StatusCreated, entity(cur)
}

// transition follows CommitStatus's state machine for the events the API
// fires: pending→enqueue, running→enqueue+run, success→success,
// failed→drop, canceled→cancel, skipped→skip.
func transition(from, to string) (event string, ok bool) {
	switch to {
	case "pending":
		return "enqueue", from == "created"
	case "running":
		return "run", from == "created" || from == "pending"
	case "success":
		return "success", from == "created" || from == "pending" || from == "running"
	case "failed":
		return "drop", from == "created" || from == "pending" || from == "running"
	case "canceled":
		return "cancel", from == "created" || from == "pending" || from == "running"
	case "skipped":
		return "skip", from == "created"
	}
	return "", false
}

func (s *Server) list(w http.ResponseWriter, project, sha string, q url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []any{}
	for _, st := range s.statuses {
		if st.ProjectID != project || st.SHA != sha || (q.Get("name") != "" && st.Name != q.Get("name")) ||
			(q.Get("ref") != "" && st.Ref != q.Get("ref")) {
			continue
		}
		out = append(out, entity(st))
	}
	writeJSON(w, http.StatusOK, out)
}

func entity(st *Status) map[string]any {
	return map[string]any{
		"id": st.ID, "sha": st.SHA, "ref": st.Ref, "status": st.State, "name": st.Name,
		"description": st.Description, "target_url": st.TargetURL, "allow_failure": false,
	}
}

func decode(r *http.Request) (Call, error) {
	var c Call
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return c, err
	}
	var in struct {
		State       string `json:"state"`
		Ref         string `json:"ref"`
		Name        string `json:"name"`
		Context     string `json:"context"`
		Description string `json:"description"`
		TargetURL   string `json:"target_url"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return c, fmt.Errorf("decoding body: %w", err)
		}
	}
	// GitLab also accepts the fields as query or form parameters.
	q := r.URL.Query()
	pick := func(v, k string) string {
		if v != "" {
			return v
		}
		return q.Get(k)
	}
	c.State = pick(in.State, "state")
	c.Ref = pick(in.Ref, "ref")
	c.Name = pick(pick(in.Name, "name"), "context")
	if c.Name == "" {
		c.Name = in.Context
	}
	c.Description = pick(in.Description, "description")
	c.TargetURL = pick(in.TargetURL, "target_url")
	return c, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
