package gitlabstatus

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/reporter/status"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func st(state status.State) status.Status {
	return status.Status{
		Commit:      status.Commit{ProjectID: "42", SHA: sha, Ref: "main", Pipeline: "build"},
		Name:        "ciel/build",
		State:       state,
		Description: "running: PipelineRun ci/build-x7k2p",
		TargetURL:   "https://tekton.example.com/#/namespaces/ci/pipelineruns/build-x7k2p",
	}
}

func TestPostLifecycle(t *testing.T) {
	gl := gitlabtest.NewServer(t, "glpat-secret")
	c, err := New(gl.URL, WithToken("glpat-secret"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range []status.State{status.Pending, status.Running, status.Success} {
		if err := c.Post(ctx, st(s)); err != nil {
			t.Fatalf("Post(%s): %v", s, err)
		}
	}
	// GitLab refuses the same running state twice; the client says so.
	if err := c.Post(ctx, st(status.Running)); err != nil {
		t.Fatalf("running after success starts a new status, got %v", err)
	}
	err = c.Post(ctx, st(status.Running))
	if !errors.Is(err, ErrStateReached) || errors.Is(err, ErrRejected) {
		t.Fatalf("running twice: %v, want ErrStateReached", err)
	}
	if got := Code(err); got != "400" {
		t.Errorf("Code() = %q, want 400", got)
	}
	want := []gitlabtest.Call{
		{ProjectID: "42", SHA: sha, State: "pending", Ref: "main", Name: "ciel/build", Code: 201},
		{ProjectID: "42", SHA: sha, State: "running", Ref: "main", Name: "ciel/build", Code: 201},
		{ProjectID: "42", SHA: sha, State: "success", Ref: "main", Name: "ciel/build", Code: 201},
		{ProjectID: "42", SHA: sha, State: "running", Ref: "main", Name: "ciel/build", Code: 201},
		{ProjectID: "42", SHA: sha, State: "running", Ref: "main", Name: "ciel/build", Code: 400},
	}
	if diff := cmp.Diff(want, gl.Calls(), cmpopts.IgnoreFields(gitlabtest.Call{}, "Description", "TargetURL")); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	got := gl.Calls()[0]
	if got.Description != st("").Description || got.TargetURL != st("").TargetURL {
		t.Errorf("description/target_url not sent: %+v", got)
	}
}

func TestPostOmitsEmptyFields(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	c, err := New(gl.URL+"/api/v4", WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	s := st(status.Failed)
	s.Ref, s.TargetURL, s.Description = "", "", ""
	if err := c.Post(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	want := []gitlabtest.Call{{ProjectID: "42", SHA: sha, State: "failed", Name: "ciel/build", Code: 201}}
	if diff := cmp.Diff(want, gl.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		code       int
		body       string
		header     string
		kind       error // ErrRejected, ErrStateReached or nil (retry)
		retryAfter time.Duration
	}{
		{code: 400, body: `{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}`, kind: ErrStateReached},
		{code: 400, body: `{"message":{"target_url":["is blocked: URL is invalid"]}}`, kind: ErrRejected},
		{code: 404, body: `{"message":"404 Project Not Found"}`, kind: ErrRejected},
		{code: 422, body: `{"message":"The number of jobs has exceeded the limit"}`, kind: ErrRejected},
		{code: 401, body: `{"message":"401 Unauthorized"}`},
		{code: 403, body: `{"message":"403 Forbidden"}`},
		{code: 408, body: `{}`},
		{code: 409, body: `{"message":"409 Conflict"}`},
		{code: 429, body: `Retry later`, header: "7", retryAfter: 7 * time.Second},
		{code: 500, body: `{"message":"500 Internal Server Error"}`},
		{code: 502, body: `<html>bad gateway</html>`},
		{code: 503, body: ``, header: "2", retryAfter: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.code)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := New(srv.URL, WithToken("tok"))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Post(context.Background(), st(status.Running))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Post() = %v, want an *Error", err)
			}
			if e.StatusCode != tc.code {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tc.code)
			}
			for _, k := range []error{ErrRejected, ErrStateReached} {
				if got, want := errors.Is(err, k), k == tc.kind; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, k, got, want)
				}
			}
			if e.RetryAfter != tc.retryAfter {
				t.Errorf("RetryAfter = %s, want %s", e.RetryAfter, tc.retryAfter)
			}
			if strings.Contains(err.Error(), "tok") && !strings.Contains(err.Error(), "token") {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestTimeoutAndNetworkErrors(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	gl.StallNext(2 * time.Second)
	c, err := New(gl.URL, WithToken("tok"), WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Post(context.Background(), st(status.Running))
	if err == nil || errors.Is(err, ErrRejected) || errors.Is(err, ErrStateReached) {
		t.Fatalf("stalled GitLab: %v, want a retryable error", err)
	}
	if got := Code(err); got != "timeout" {
		t.Errorf("Code() = %q, want timeout (%v)", got, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Post(ctx, st(status.Running)); Code(err) != "canceled" {
		t.Errorf("canceled context: Code(%v) = %q, want canceled", err, Code(err))
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c, err = New(closed.URL, WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Post(context.Background(), st(status.Running))
	if got := Code(err); got != "network" || errors.Is(err, ErrRejected) {
		t.Errorf("refused connection: Code(%v) = %q, want network, retryable", err, got)
	}
}

func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gl := gitlabtest.NewServer(t, "first-token")
	c, err := New(gl.URL, WithTokenFile(path))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Post(ctx, st(status.Pending)); err != nil {
		t.Fatalf("first token: %v", err)
	}
	// Rotate the way a Secret volume does: a new file swapped in by rename.
	gl2 := gitlabtest.NewServer(t, "second-token")
	c2, err := New(gl2.URL, WithTokenFile(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Post(ctx, st(status.Pending)); Code(err) != "401" {
		t.Fatalf("before rotation: %v, want 401", err)
	}
	tmp := filepath.Join(dir, "token.new")
	if err := os.WriteFile(tmp, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if err := c2.Post(ctx, st(status.Pending)); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// A token file that disappears is a retryable error, not a crash.
	os.Remove(path)
	if err := c2.Post(ctx, st(status.Running)); err == nil || errors.Is(err, ErrRejected) {
		t.Fatalf("missing token file: %v, want a retryable error", err)
	}
}

func TestCAFile(t *testing.T) {
	srv := gitlabtest.NewTLSServer(t, "tok")
	ctx := context.Background()

	c, err := New(srv.URL, WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Post(ctx, st(status.Running)); err == nil {
		t.Fatal("untrusted certificate accepted")
	}

	c, err = New(srv.URL, WithToken("tok"), WithCAFile(gitlabtest.CAFile(t, srv.Server)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Post(ctx, st(status.Running)); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
}

// TestCrossHostRedirectRefused: a GitLab URL that redirects (307, so the
// POST and its token would be replayed) to another host does not get the
// status, nor the token, there.
func TestCrossHostRedirectRefused(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, gl.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer front.Close()
	c, err := New(front.URL, WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Post(context.Background(), st(status.Running)); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("Post through a cross-host redirect: %v, want the refused redirect", err)
	}
	if n := len(gl.Calls()); n != 0 {
		t.Errorf("the other host received %d calls with the token", n)
	}
}
