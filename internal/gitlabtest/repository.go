package gitlabtest

import (
	"net/http"
	"regexp"
	"strconv"
)

// Diff is one file of a merge request's or a compare's diff, in GitLab's
// shape.
type Diff struct {
	OldPath     string `json:"old_path"`
	NewPath     string `json:"new_path"`
	NewFile     bool   `json:"new_file"`
	RenamedFile bool   `json:"renamed_file"`
	DeletedFile bool   `json:"deleted_file"`
}

var (
	mrDiffsRE = regexp.MustCompile(`^/api/v4/projects/([^/]+)/merge_requests/([0-9]+)/diffs$`)
	compareRE = regexp.MustCompile(`^/api/v4/projects/([^/]+)/repository/compare$`)
)

// SetMergeRequestDiffs makes GET /projects/:project/merge_requests/:iid/diffs
// list diffs, per_page at a time (GitLab's default 20, at most 100), with
// X-Next-Page and X-Total-Pages as GitLab sends them.
func (s *Server) SetMergeRequestDiffs(project string, iid int64, diffs []Diff) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mrDiffs == nil {
		s.mrDiffs = map[string][]Diff{}
	}
	s.mrDiffs[project+"!"+strconv.FormatInt(iid, 10)] = diffs
}

// SetCompare makes GET /projects/:project/repository/compare?from=..&to=..
// answer diffs (with straight=true or false alike).
func (s *Server) SetCompare(project, from, to string, diffs []Diff) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.compares == nil {
		s.compares = map[string][]Diff{}
	}
	s.compares[project+"|"+from+"|"+to] = diffs
}

// Requests returns how many requests the merge request diffs and the
// compare endpoints received, failed ones included.
func (s *Server) Requests() (mrDiffs, compares int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mrDiffRequests, s.compareRequests
}

// serveRepository answers the merge request diffs and compare APIs; false
// for any other path.
func (s *Server) serveRepository(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if m := mrDiffsRE.FindStringSubmatch(r.URL.Path); m != nil {
		s.answer(w, &s.mrDiffRequests, s.mrDiffs, m[1]+"!"+m[2], "404 Not found", func(diffs []Diff) { writePage(w, r, diffs) })
		return true
	}
	if m := compareRE.FindStringSubmatch(r.URL.Path); m != nil {
		q := r.URL.Query()
		s.answer(w, &s.compareRequests, s.compares, m[1]+"|"+q.Get("from")+"|"+q.Get("to"), "404 Ref Not Found", func(diffs []Diff) {
			writeJSON(w, http.StatusOK, map[string]any{"commits": []any{}, "diffs": diffs, "compare_timeout": false, "compare_same_ref": false})
		})
		return true
	}
	return false
}

// answer serves one repository request for key of set, counted in
// *requests: a scripted failure (FailNext), a 404 with notFound as its
// message when set has no key, or write of its diffs.
func (s *Server) answer(w http.ResponseWriter, requests *int, set map[string][]Diff, key, notFound string, write func([]Diff)) {
	s.mu.Lock()
	*requests++
	diffs, ok := set[key]
	f := s.takeFailure()
	s.mu.Unlock()
	switch {
	case f != nil:
		writeJSON(w, f.code, map[string]string{"message": "scripted failure"})
	case !ok:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": notFound})
	default:
		write(diffs)
	}
}

// takeFailure pops a scripted failure that is an HTTP code (FailNext).
// s.mu is held.
func (s *Server) takeFailure() *failure {
	if len(s.failures) == 0 || s.failures[0].code == 0 {
		return nil
	}
	f := s.failures[0]
	s.failures = s.failures[1:]
	return &f
}

func writePage(w http.ResponseWriter, r *http.Request, all []Diff) {
	q := r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage <= 0 {
		perPage = 20
	}
	perPage = min(perPage, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	pages := max(1, (len(all)+perPage-1)/perPage)
	start := min(len(all), (page-1)*perPage)
	end := min(len(all), start+perPage)
	w.Header().Set("X-Page", strconv.Itoa(page))
	w.Header().Set("X-Per-Page", strconv.Itoa(perPage))
	w.Header().Set("X-Total", strconv.Itoa(len(all)))
	w.Header().Set("X-Total-Pages", strconv.Itoa(pages))
	if page < pages {
		w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
	} else {
		w.Header().Set("X-Next-Page", "")
	}
	out := all[start:end]
	if out == nil {
		out = []Diff{}
	}
	writeJSON(w, http.StatusOK, out)
}
