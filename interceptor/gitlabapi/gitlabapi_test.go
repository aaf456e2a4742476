package gitlabapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

func event(t *testing.T, name string) *gitlab.PushEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := gitlab.Decode("", b)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Push
}

// fakeGitLab serves the compare and commit diff APIs in GitLab's shapes.
type fakeGitLab struct {
	mu       sync.Mutex
	calls    []string
	compare  func(r *http.Request) (int, any)
	diffs    map[string][]map[string]any
	mrDiffs  []map[string]any // GET .../merge_requests/:iid/diffs, 100 a page
	failures atomic.Int32     // answer 503 this many times first
}

func (f *fakeGitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.URL.Path+"?"+r.URL.RawQuery)
	f.mu.Unlock()
	if r.Header.Get("PRIVATE-TOKEN") != "glpat-test" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"message":"401 Unauthorized"}`)
		return
	}
	if f.failures.Load() > 0 {
		f.failures.Add(-1)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"message":"503 Service Unavailable"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/repository/compare"):
		code, body := f.compare(r)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	case strings.Contains(r.URL.Path, "/merge_requests/") && strings.HasSuffix(r.URL.Path, "/diffs"):
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		page = max(page, 1)
		start := min(len(f.mrDiffs), (page-1)*100)
		end := min(len(f.mrDiffs), start+100)
		if end < len(f.mrDiffs) {
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		}
		json.NewEncoder(w).Encode(f.mrDiffs[start:end])
	case strings.Contains(r.URL.Path, "/repository/commits/") && strings.HasSuffix(r.URL.Path, "/diff"):
		sha := strings.Split(r.URL.Path, "/")[7]
		d := f.diffs[sha]
		page := r.URL.Query().Get("page")
		if page == "" || page == "1" {
			if len(d) > 2 {
				w.Header().Set("X-Next-Page", "2")
				d = d[:2]
			}
		} else {
			d = d[2:]
		}
		json.NewEncoder(w).Encode(d)
	default:
		http.NotFound(w, r)
	}
}

func diff(path string, kind string) map[string]any {
	return map[string]any{"old_path": path, "new_path": path, "a_mode": "100644", "b_mode": "100644",
		"new_file": kind == "A", "deleted_file": kind == "D", "renamed_file": false, "diff": "@@ -1 +1 @@\n-a\n+b\n"}
}

func newSource(t *testing.T, f *fakeGitLab, opts ...Option) (*Source, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := New(srv.URL, "glpat-test", append([]Option{WithRetries(2, time.Millisecond, 5*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, srv
}

func TestCompletePayloadMakesNoRequest(t *testing.T) {
	f := &fakeGitLab{compare: func(*http.Request) (int, any) { t.Fatal("compare called"); return 0, nil }}
	s, _ := newSource(t, f)
	cf, err := s.ChangedFiles(context.Background(), event(t, "push.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cf.Source != gitlab.SourcePayload || len(f.calls) != 0 {
		t.Errorf("source %s, %d calls; want the payload and no call", cf.Source, len(f.calls))
	}
}

func TestTruncatedPushComparedOnceAndCached(t *testing.T) {
	ev := event(t, "truncated_push.json")
	f := &fakeGitLab{compare: func(r *http.Request) (int, any) {
		q := r.URL.Query()
		if q.Get("from") != ev.Before || q.Get("to") != ev.After || q.Get("straight") != "true" {
			t.Errorf("compare query %v", q)
		}
		return 200, map[string]any{"commits": []any{}, "compare_timeout": false, "compare_same_ref": false,
			"diffs": []any{diff("src/a.go", "A"), diff("src/b.go", "M"), diff("old.txt", "D")}}
	}}
	s, _ := newSource(t, f)
	for range 3 {
		cf, err := s.ChangedFiles(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		want := gitlab.ChangedFiles{All: []string{"src/a.go", "src/b.go", "old.txt"}, Added: []string{"src/a.go"},
			Modified: []string{"src/b.go"}, Removed: []string{"old.txt"}, Source: gitlab.SourceAPI}
		if diff := cmp.Diff(want, cf); diff != "" {
			t.Errorf("changed files (-want +got):\n%s", diff)
		}
	}
	if len(f.calls) != 1 || s.Stats().CacheHits.Load() != 2 {
		t.Errorf("%d calls, %d cache hits; want 1 and 2", len(f.calls), s.Stats().CacheHits.Load())
	}
}

func TestNewBranchComparesWithDefaultBranch(t *testing.T) {
	ev := event(t, "new_branch_empty.json")
	f := &fakeGitLab{compare: func(r *http.Request) (int, any) {
		q := r.URL.Query()
		if q.Get("from") != "main" || q.Get("straight") != "false" {
			t.Errorf("compare query %v, want from=main straight=false", q)
		}
		return 200, map[string]any{"commits": []any{}, "diffs": []any{}}
	}}
	s, _ := newSource(t, f)
	cf, err := s.ChangedFiles(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if cf.Source != gitlab.SourceAPI || cf.Truncated || len(cf.All) != 0 || cf.All == nil {
		t.Errorf("got %+v", cf)
	}
}

func TestCutCompareFallsBackToCommitDiffs(t *testing.T) {
	ev := event(t, "force_push.json")
	f := &fakeGitLab{
		compare: func(*http.Request) (int, any) {
			return 200, map[string]any{"compare_timeout": true, "diffs": []any{},
				"commits": []any{map[string]any{"id": "c1"}, map[string]any{"id": "c2"}}}
		},
		diffs: map[string][]map[string]any{
			"c1": {diff("a.go", "A"), diff("tmp.txt", "A"), diff("b.go", "M")},
			"c2": {diff("tmp.txt", "D"), diff("a.go", "M")},
		},
	}
	s, _ := newSource(t, f)
	cf, err := s.ChangedFiles(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	want := gitlab.ChangedFiles{All: []string{"a.go", "b.go"}, Added: []string{"a.go"}, Modified: []string{"b.go"}, Removed: []string{}, Source: gitlab.SourceAPI}
	if diff := cmp.Diff(want, cf); diff != "" {
		t.Errorf("changed files (-want +got):\n%s\ncalls %v", diff, f.calls)
	}
	if s.Stats().Fallbacks.Load() != 1 || len(f.calls) != 4 { // compare + c1 two pages + c2
		t.Errorf("fallbacks %d, calls %v", s.Stats().Fallbacks.Load(), f.calls)
	}
}

func TestRetriesThenFails(t *testing.T) {
	ev := event(t, "truncated_push.json")
	ok := func(*http.Request) (int, any) { return 200, map[string]any{"diffs": []any{diff("x", "M")}} }
	f := &fakeGitLab{compare: ok}
	f.failures.Store(2)
	s, _ := newSource(t, f)
	if _, err := s.ChangedFiles(context.Background(), ev); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	if len(f.calls) != 3 {
		t.Errorf("%d calls, want 3", len(f.calls))
	}

	f2 := &fakeGitLab{compare: ok}
	f2.failures.Store(100)
	s2, _ := newSource(t, f2)
	_, err := s2.ChangedFiles(context.Background(), ev)
	if err == nil || !strings.Contains(err.Error(), "comparing") {
		t.Fatalf("error %v, want one saying what failed", err)
	}
	if len(f2.calls) != 3 {
		t.Errorf("%d calls, want 1 + 2 retries", len(f2.calls))
	}

	s3, err := New("http://127.0.0.1:1", "glpat-test", WithRetries(0, time.Millisecond, time.Millisecond), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.ChangedFiles(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable GitLab: %v", err)
	}
}

func TestTagAndDeleteNeedNoRequest(t *testing.T) {
	f := &fakeGitLab{compare: func(*http.Request) (int, any) { t.Fatal("compare called"); return 0, nil }}
	s, _ := newSource(t, f)
	for _, name := range []string{"tag_push.json", "branch_delete.json", "tag_delete.json"} {
		if _, err := s.Compare(context.Background(), event(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Option{WithHTTPClient(nil), WithTimeout(0), WithRetries(-1, time.Second, time.Second), WithCacheSize(0), WithMaxDiffFiles(0), WithLogger(nil)} {
		if _, err := New("https://gitlab.example.com", "t", o); err == nil {
			t.Error("an invalid option was accepted")
		}
	}
	if _, err := New("", "t"); err == nil {
		t.Error("no base URL accepted")
	}
}
