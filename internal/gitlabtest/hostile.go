package gitlabtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hostile is a GitLab repository API that never ends, for the bounds of
// the changed-files fallback: its compare is always cut by a timeout
// (compare_timeout: true) and lists Commits commits, and every commit's
// diff has one more page of PageSize diffs of DiffBytes bytes each (until
// LastPage, when set). Stall makes every answer wait (or until the client
// leaves). Serve it with httptest.NewServer or NewTLSServer.
type Hostile struct {
	Commits   int
	PageSize  int
	DiffBytes int
	LastPage  int
	Stall     time.Duration

	calls, bytes atomic.Int64
	once         sync.Once
	page         []byte // one page of diffs, rendered once so the stub itself allocates little
}

// Calls is the number of requests received.
func (h *Hostile) Calls() int64 { return h.calls.Load() }

// Bytes is the number of response bytes written.
func (h *Hostile) Bytes() int64 { return h.bytes.Load() }

func (h *Hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	if h.Stall > 0 {
		select {
		case <-time.After(h.Stall):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/repository/compare"):
		commits := make([]map[string]any, h.Commits)
		for i := range commits {
			commits[i] = map[string]any{"id": fmt.Sprintf("%040x", i+1)}
		}
		b, _ := json.Marshal(map[string]any{"compare_timeout": true, "diffs": []any{}, "commits": commits})
		h.bytes.Add(int64(len(b)))
		w.Write(b)
	case strings.HasSuffix(r.URL.Path, "/diff"):
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page == 0 {
			page = 1
		}
		if h.LastPage == 0 || page < h.LastPage {
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		}
		h.once.Do(func() {
			text := strings.Repeat("+x\n", h.DiffBytes/3)
			diffs := make([]map[string]any, h.PageSize)
			for i := range diffs {
				p := fmt.Sprintf("dir/%d/file-%d.go", i, i)
				diffs[i] = map[string]any{"old_path": p, "new_path": p, "new_file": true, "diff": text}
			}
			h.page, _ = json.Marshal(diffs)
		})
		h.bytes.Add(int64(len(h.page)))
		w.Write(h.page)
	default:
		http.NotFound(w, r)
	}
}
