package gitlabapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/internal/gitlabtest"
)

// hostileSource is a Source on a hostile GitLab served over HTTPS on
// loopback.
func hostileSource(t *testing.T, h http.Handler, opts ...Option) *Source {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	s, err := New(srv.URL, "glpat-test", append([]Option{WithHTTPClient(srv.Client()), WithRetries(0, time.Millisecond, time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostileGitLabBounded runs the changed-files fallback with its default
// limits against a GitLab that would answer forever (5,000 commits, endless
// pages of 100 diffs of 3 kB), over HTTPS on loopback, and reports the
// cost. Before the limits (issue 21, item 8) the same lookup made 2,649
// calls in 20 s, allocated 4.5 GiB and ended in an error (Unavailable).
func TestHostileGitLabBounded(t *testing.T) {
	h := &gitlabtest.Hostile{Commits: 5000, PageSize: 100, DiffBytes: 3000}
	s := hostileSource(t, h)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	cf, err := s.ChangedFiles(context.Background(), event(t, "force_push.json"))
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("calls %d, served %d MiB, took %s, allocated %d MiB (stub included), files %d, truncated %v",
		h.Calls(), h.Bytes()>>20, took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, len(cf.All), cf.Truncated)
	if err != nil {
		t.Fatalf("a capped lookup is a truncated answer, not an error: %v", err)
	}
	if !cf.Truncated || cf.Source != gitlab.SourceAPI || len(cf.All) == 0 {
		t.Errorf("got %d files, truncated %v, source %s; want what was read, truncated, from the API", len(cf.All), cf.Truncated, cf.Source)
	}
	if n := h.Calls(); n > 1+DefaultMaxPages {
		t.Errorf("%d calls, want at most 1 + %d", n, DefaultMaxPages)
	}
	if s.Stats().Truncations.Load() != 1 {
		t.Errorf("truncations %d, want 1", s.Stats().Truncations.Load())
	}
}

// TestLimitsTruncate checks each cap on its own.
func TestLimitsTruncate(t *testing.T) {
	tests := []struct {
		name      string
		h         *gitlabtest.Hostile
		opts      []Option
		maxCalls  int64
		wantFiles int
	}{
		{"commits", &gitlabtest.Hostile{Commits: 50, PageSize: 1, DiffBytes: 3, LastPage: 1}, []Option{WithMaxCommits(3)}, 4, 1},
		{"pages", &gitlabtest.Hostile{Commits: 50, PageSize: 2, DiffBytes: 3}, []Option{WithMaxPages(5)}, 6, 2},
		{"bytes", &gitlabtest.Hostile{Commits: 50, PageSize: 100, DiffBytes: 3000}, []Option{WithMaxBytes(1 << 20)}, 5, 100},
		{"time", &gitlabtest.Hostile{Commits: 50, PageSize: 1, DiffBytes: 3, Stall: time.Hour}, []Option{WithMaxDuration(200 * time.Millisecond)}, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := hostileSource(t, tc.h, tc.opts...)
			ev := event(t, "force_push.json")
			cf, err := s.ChangedFiles(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if !cf.Truncated || tc.h.Calls() > tc.maxCalls {
				t.Errorf("truncated %v after %d calls; want truncated after at most %d", cf.Truncated, tc.h.Calls(), tc.maxCalls)
			}
			if tc.wantFiles > 0 && len(cf.All) != tc.wantFiles {
				t.Errorf("%d files, want the %d read before the cap", len(cf.All), tc.wantFiles)
			}
			if tc.wantFiles == 0 && cf.Source != gitlab.SourcePayload {
				t.Errorf("cut during the compare: source %s, want the payload's list", cf.Source)
			}
		})
	}
}

// TestRequestDeadlineIsAnError: when the caller's own context ends, the
// lookup fails (Unavailable upstream) instead of passing a truncated list
// off as an answer.
func TestRequestDeadlineIsAnError(t *testing.T) {
	s := hostileSource(t, &gitlabtest.Hostile{Commits: 5, PageSize: 1, DiffBytes: 3, Stall: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.ChangedFiles(ctx, event(t, "force_push.json")); err == nil {
		t.Error("the caller's deadline passed and the lookup did not fail")
	}
}

// TestCrossHostRedirectRefused: a GitLab that redirects to another host
// does not get the token sent there.
func TestCrossHostRedirectRefused(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != "" {
			leaked.Add(1)
		}
		fmt.Fprint(w, `{"diffs":[]}`)
	}))
	defer other.Close()
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	})
	srv := httptest.NewServer(redirect)
	defer srv.Close()
	s, err := New(srv.URL, "glpat-test", WithRetries(0, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangedFiles(context.Background(), event(t, "truncated_push.json")); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("error %v, want the refused redirect", err)
	}
	if leaked.Load() != 0 {
		t.Error("the token reached the other host")
	}
}

// TestCommitExists asks a GitLab over HTTPS on loopback by project path:
// found (and remembered), unknown (404), a ref that is not the SHA, down.
func TestCommitExists(t *testing.T) {
	const sha = "c95fc90a82e297e2b5fcd3722b931d149a388884"
	var calls atomic.Int32
	var down atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		switch r.URL.EscapedPath() {
		case "/api/v4/projects/acme%2Fpayments-api/repository/commits/" + sha:
			fmt.Fprintf(w, `{"id":%q,"short_id":"c95fc90a"}`, sha)
		case "/api/v4/projects/acme%2Fpayments-api/repository/commits/main":
			fmt.Fprintf(w, `{"id":%q}`, sha)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"404 Commit Not Found"}`)
		}
	}))
	defer srv.Close()
	s, err := New(srv.URL, "glpat-test", WithHTTPClient(srv.Client()), WithRetries(0, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		if ok, err := s.CommitExists(ctx, "acme/payments-api", sha); !ok || err != nil {
			t.Fatalf("lookup %d: %v %v", i, ok, err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls for two lookups of one commit, want 1 (cached)", calls.Load())
	}
	if ok, err := s.CommitExists(ctx, "victim/repo", sha); ok || err != nil {
		t.Errorf("commit of another project: %v %v", ok, err)
	}
	if ok, err := s.CommitExists(ctx, "acme/payments-api", "main"); ok || err != nil {
		t.Errorf("a ref instead of the SHA: %v %v", ok, err)
	}
	down.Store(true)
	if _, err := s.CommitExists(ctx, "acme/payments-api", strings.Repeat("a", 40)); err == nil {
		t.Error("GitLab down: no error")
	}
}
