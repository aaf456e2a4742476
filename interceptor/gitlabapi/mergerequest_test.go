package gitlabapi

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/internal/gitlabtest"
)

const (
	mrHead   = "87b8ab59efd0b066aec5c7419999f9abea3db40e"
	mrOldrev = "839dc7c73c1f22b920b5eeacacc72503a86727a5"
)

func mrEvent(t *testing.T, edits ...string) *gitlab.MergeRequestEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "gitlab", "testdata", "merge_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	ev, err := gitlab.Decode(gitlab.HeaderMergeRequest, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return ev.MergeRequest
}

func TestMergeRequestFilesPagedAndCachedByHead(t *testing.T) {
	var diffs []map[string]any
	for i := range 230 {
		diffs = append(diffs, diff(fmt.Sprintf("src/f%03d.go", i), "M"))
	}
	diffs[0] = diff("src/new.go", "A")
	diffs[1] = diff("old.txt", "D")
	f := &fakeGitLab{mrDiffs: diffs}
	s, _ := newSource(t, f)
	ev := mrEvent(t)
	for range 3 {
		cf, err := s.MergeRequestFiles(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(cf.All) != 230 || cf.Added[0] != "src/new.go" || cf.Removed[0] != "old.txt" || cf.Truncated || cf.Source != gitlab.SourceAPI {
			t.Fatalf("got %d files, added %v, removed %v, truncated %v, source %s", len(cf.All), cf.Added, cf.Removed, cf.Truncated, cf.Source)
		}
	}
	want := []string{
		"/api/v4/projects/42/merge_requests/57/diffs?page=1&per_page=100",
		"/api/v4/projects/42/merge_requests/57/diffs?page=2&per_page=100",
		"/api/v4/projects/42/merge_requests/57/diffs?page=3&per_page=100",
	}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// A new head is a new diff.
	if _, err := s.MergeRequestFiles(context.Background(), mrEvent(t, mrHead, strings.Repeat("a", 40))); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 6 {
		t.Errorf("%d requests after a new head, want 6", len(f.calls))
	}
}

func TestMergeRequestFilesBounded(t *testing.T) {
	var diffs []map[string]any
	for i := range 25 {
		diffs = append(diffs, diff(fmt.Sprintf("f%d", i), "M"))
	}
	f := &fakeGitLab{mrDiffs: diffs}
	s, _ := newSource(t, f, WithMaxDiffFiles(25))
	cf, err := s.MergeRequestFiles(context.Background(), mrEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Truncated || len(cf.All) != 25 {
		t.Errorf("a list at the instance's max diff files: truncated %v, %d files; want truncated", cf.Truncated, len(cf.All))
	}
}

func TestMergeRequestFilesRetriedThenFail(t *testing.T) {
	f := &fakeGitLab{mrDiffs: []map[string]any{diff("a.go", "M")}}
	f.failures.Store(2)
	s, _ := newSource(t, f)
	if _, err := s.MergeRequestFiles(context.Background(), mrEvent(t)); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	if len(f.calls) != 3 {
		t.Errorf("%d requests, want 3", len(f.calls))
	}
	f2 := &fakeGitLab{mrDiffs: []map[string]any{diff("a.go", "M")}}
	f2.failures.Store(100)
	s2, _ := newSource(t, f2)
	_, err := s2.MergeRequestFiles(context.Background(), mrEvent(t))
	if err == nil || !strings.Contains(err.Error(), "listing the changes of merge request !57 in project 42: GitLab answered 503") {
		t.Fatalf("error %v, want one naming the MR and GitLab's answer", err)
	}
}

func TestMergeRequestUpdateFilesCompareOldrev(t *testing.T) {
	f := &fakeGitLab{compare: func(r *http.Request) (int, any) {
		q := r.URL.Query()
		if q.Get("from") != mrOldrev || q.Get("to") != mrHead || q.Get("straight") != "true" || !strings.Contains(r.URL.Path, "/projects/42/") {
			t.Errorf("compare %s %v", r.URL.Path, q)
		}
		return 200, map[string]any{"commits": []any{}, "diffs": []any{diff("src/a.go", "M")}}
	}}
	s, _ := newSource(t, f)
	for range 2 {
		cf, err := s.MergeRequestUpdateFiles(context.Background(), mrEvent(t))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"src/a.go"}, cf.All); diff != "" {
			t.Error(diff)
		}
	}
	if len(f.calls) != 1 {
		t.Errorf("%d requests, want 1 (cached)", len(f.calls))
	}
	cf, err := s.MergeRequestUpdateFiles(context.Background(), mrEvent(t, `"oldrev": "`+mrOldrev+`",`, ""))
	if err != nil || cf.Source != gitlab.SourceNone || len(f.calls) != 1 {
		t.Errorf("without oldrev: %+v, %v, %d requests; want none and no request", cf, err, len(f.calls))
	}
}

// TestMergeRequestFilesOverHTTPS runs the MR path against gitlabtest's
// HTTPS GitLab on loopback, counting requests per event.
func TestMergeRequestFilesOverHTTPS(t *testing.T) {
	gl := gitlabtest.NewTLSServer(t, "glpat-mr")
	var diffs []gitlabtest.Diff
	for i := range 150 {
		diffs = append(diffs, gitlabtest.Diff{OldPath: fmt.Sprintf("src/%d.go", i), NewPath: fmt.Sprintf("src/%d.go", i)})
	}
	diffs = append(diffs, gitlabtest.Diff{OldPath: "a.txt", NewPath: "b.txt", RenamedFile: true})
	gl.SetMergeRequestDiffs("42", 57, diffs)
	gl.SetCompare("42", mrOldrev, mrHead, []gitlabtest.Diff{{OldPath: "src/1.go", NewPath: "src/1.go"}})
	s, err := New(gl.URL, "glpat-mr", WithHTTPClient(gl.Client()), WithRetries(1, time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ev := mrEvent(t)
	cf, err := s.MergeRequestFiles(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.All) != 152 || cf.Added[0] != "b.txt" || cf.Removed[0] != "a.txt" || cf.Truncated {
		t.Errorf("got %d files, added %v, removed %v, truncated %v", len(cf.All), cf.Added, cf.Removed, cf.Truncated)
	}
	up, err := s.MergeRequestUpdateFiles(context.Background(), ev)
	if err != nil || cmp.Diff([]string{"src/1.go"}, up.All) != "" {
		t.Errorf("update files %v, %v", up.All, err)
	}
	if mr, cmpN := gl.Requests(); mr != 2 || cmpN != 1 {
		t.Errorf("requests: %d MR diff pages, %d compares; want 2 and 1", mr, cmpN)
	}
	// The same head again (a label edit that reads the files): cached.
	if _, err := s.MergeRequestFiles(context.Background(), mrEvent(t, mrOldrev, "")); err != nil {
		t.Fatal(err)
	}
	if mr, _ := gl.Requests(); mr != 2 {
		t.Errorf("%d MR diff requests after a label edit at the same head, want 2", mr)
	}
	// A wrong token is refused by the stub, and the error says so.
	bad, err := New(gl.URL, "glpat-wrong", WithHTTPClient(gl.Client()), WithRetries(0, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.MergeRequestFiles(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
}
