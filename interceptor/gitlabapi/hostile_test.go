package gitlabapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// hostileGitLab is a GitLab that never ends: its compare is always cut, it
// lists thousands of commits, and every commit's diff has another page of
// large diffs.
type hostileGitLab struct {
	commits  int
	pageSize int // diffs per page
	diffText int // bytes of each diff's text
	calls    atomic.Int64
	bytes    atomic.Int64
	lastPage int           // when > 0, the diffs end at this page
	stall    time.Duration // wait this long (or until the client leaves) before answering
	once     sync.Once
	page     []byte // one page of diffs, rendered once so the stub allocates little
}

func (h *hostileGitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	if h.stall > 0 {
		select {
		case <-time.After(h.stall):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	var body any
	switch {
	case strings.HasSuffix(r.URL.Path, "/repository/compare"):
		commits := make([]map[string]any, h.commits)
		for i := range commits {
			commits[i] = map[string]any{"id": fmt.Sprintf("%040x", i+1)}
		}
		body = map[string]any{"compare_timeout": true, "diffs": []any{}, "commits": commits}
	case strings.HasSuffix(r.URL.Path, "/diff"):
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page == 0 {
			page = 1
		}
		if h.lastPage == 0 || page < h.lastPage {
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		}
		w.Header().Set("X-Total-Pages", "1000000")
		h.once.Do(func() {
			text := strings.Repeat("+x\n", h.diffText/3)
			diffs := make([]map[string]any, h.pageSize)
			for i := range diffs {
				p := fmt.Sprintf("dir/%d/file-%d.go", i, i)
				diffs[i] = map[string]any{"old_path": p, "new_path": p, "new_file": true, "diff": text}
			}
			h.page, _ = json.Marshal(diffs)
		})
		h.bytes.Add(int64(len(h.page)))
		w.Write(h.page)
		return
	default:
		http.NotFound(w, r)
		return
	}
	b, _ := json.Marshal(body)
	h.bytes.Add(int64(len(b)))
	w.Write(b)
}

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
	h := &hostileGitLab{commits: 5000, pageSize: 100, diffText: 3000}
	s := hostileSource(t, h)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	cf, err := s.ChangedFiles(context.Background(), event(t, "force_push.json"))
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("calls %d, served %d MiB, took %s, allocated %d MiB (stub included), files %d, truncated %v",
		h.calls.Load(), h.bytes.Load()>>20, took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, len(cf.All), cf.Truncated)
	if err != nil {
		t.Fatalf("a capped lookup is a truncated answer, not an error: %v", err)
	}
	if !cf.Truncated || cf.Source != gitlab.SourceAPI || len(cf.All) == 0 {
		t.Errorf("got %d files, truncated %v, source %s; want what was read, truncated, from the API", len(cf.All), cf.Truncated, cf.Source)
	}
	if n := h.calls.Load(); n > 1+DefaultMaxPages {
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
		h         *hostileGitLab
		opts      []Option
		maxCalls  int64
		wantFiles int
	}{
		{"commits", &hostileGitLab{commits: 50, pageSize: 1, diffText: 3, lastPage: 1}, []Option{WithMaxCommits(3)}, 4, 1},
		{"pages", &hostileGitLab{commits: 50, pageSize: 2, diffText: 3}, []Option{WithMaxPages(5)}, 6, 2},
		{"bytes", &hostileGitLab{commits: 50, pageSize: 100, diffText: 3000}, []Option{WithMaxBytes(1 << 20)}, 5, 100},
		{"time", &hostileGitLab{commits: 50, pageSize: 1, diffText: 3, stall: time.Hour}, []Option{WithMaxDuration(200 * time.Millisecond)}, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := hostileSource(t, tc.h, tc.opts...)
			ev := event(t, "force_push.json")
			cf, err := s.ChangedFiles(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if !cf.Truncated || tc.h.calls.Load() > tc.maxCalls {
				t.Errorf("truncated %v after %d calls; want truncated after at most %d", cf.Truncated, tc.h.calls.Load(), tc.maxCalls)
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
	s := hostileSource(t, &hostileGitLab{commits: 5, pageSize: 1, diffText: 3, stall: time.Hour})
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
	f := &fakeGitLab{compare: func(*http.Request) (int, any) { return 200, nil }}
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	})
	_ = f
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
