package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// countingMR is a merge request files source that counts its calls, as
// gitlabapi.Source would count requests.
type countingMR struct {
	files, update atomic.Int32
	err           error
}

func (c *countingMR) ChangedFiles(context.Context, *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
	return gitlab.ChangedFiles{}, errors.New("not a push source")
}

func (c *countingMR) MergeRequestFiles(context.Context, *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	c.files.Add(1)
	if c.err != nil {
		return gitlab.ChangedFiles{}, c.err
	}
	return gitlab.ChangedFiles{All: []string{"src/refunds.go", "README.md"}, Added: []string{"src/refunds.go"},
		Modified: []string{"README.md"}, Removed: []string{}, Source: gitlab.SourceAPI}, nil
}

func (c *countingMR) MergeRequestUpdateFiles(context.Context, *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	c.update.Add(1)
	if c.err != nil {
		return gitlab.ChangedFiles{}, c.err
	}
	return gitlab.ChangedFiles{All: []string{"README.md"}, Added: []string{}, Modified: []string{"README.md"},
		Removed: []string{}, Source: gitlab.SourceAPI}, nil
}

// mrEvent is the documented merge request event with text replacements.
func mrEvent(t testing.TB, edits ...string) []byte {
	t.Helper()
	s := string(fixture(t, "merge_request.json"))
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("fixture has no %q", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return []byte(s)
}

var (
	mrNoOldrev = []string{`"oldrev": "839dc7c73c1f22b920b5eeacacc72503a86727a5",`, ""}
	mrOpen     = []string{`"oldrev": "839dc7c73c1f22b920b5eeacacc72503a86727a5",`, "", `"action": "update"`, `"action": "open"`}
)

const buildOnChange = `(extensions.merge_request.action in ["open", "reopen"] || extensions.merge_request.has_new_commits) &&
	(extensions.changed_files.truncated || extensions.changed_files.all.matchesAny(["src/**"]))`

func TestMergeRequestFilesFetchedOnlyWhenNeeded(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name                  string
		edits                 []string
		rules                 Rules
		want                  bool
		wantFiles, wantUpdate int32
		wantSource            string
	}{
		{"label edit: the filter never needs the files", mrNoOldrev, Rules{Filter: buildOnChange}, false, 0, 0, "none"},
		{"label edit the trigger fires on: not fetched for bindings", mrNoOldrev, Rules{Filter: `extensions.merge_request.labels_added.size() > 0`}, true, 0, 0, "none"},
		{"files read on the right of &&: still none on a label edit", mrNoOldrev,
			Rules{Filter: `extensions.changed_files.all.matchesAny(["src/**"]) && extensions.merge_request.has_new_commits`}, false, 0, 0, "none"},
		{"update with commits reads the MR's files once", nil, Rules{Filter: buildOnChange}, true, 1, 0, "api"},
		{"open: files fetched once, for the filter and the bindings", mrOpen, Rules{Filter: buildOnChange}, true, 1, 0, "api"},
		{"open without a filter: fetched for the bindings", mrOpen, Rules{}, true, 1, 0, "api"},
		{"update's own files", nil, Rules{Filter: `extensions.changed_files.update.all.matchesAny(["src/**"])`}, false, 0, 1, "none"},
		{"update's own files, then the bindings", nil, Rules{Filter: `extensions.changed_files.update.all.exists(p, p == "README.md")`}, true, 1, 1, "api"},
		{"no oldrev: update is empty without a request", mrNoOldrev,
			Rules{Filter: `extensions.changed_files.update.source == "none" && size(extensions.changed_files.update.all) == 0`}, true, 0, 0, "none"},
		{"the whole map in an overlay", nil, Rules{Overlays: []Overlay{{Key: "cf", Expression: `extensions.changed_files`}}}, true, 1, 1, "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingMR{}
			d, err := e.Evaluate(context.Background(), mustCompile(t, e, tt.rules),
				Input{Body: mrEvent(t, tt.edits...), Header: pushHeader("Merge Request Hook"), ChangedFiles: src})
			if err != nil {
				t.Fatal(err)
			}
			if d.Continue != tt.want {
				t.Errorf("Continue = %v, want %v", d.Continue, tt.want)
			}
			if got := [2]int32{src.files.Load(), src.update.Load()}; got != [2]int32{tt.wantFiles, tt.wantUpdate} {
				t.Errorf("calls (files, update) = %v, want %v", got, [2]int32{tt.wantFiles, tt.wantUpdate})
			}
			if d.Continue {
				cf, _ := d.Extensions["changed_files"].(map[string]any)
				if cf["source"] != tt.wantSource {
					t.Errorf("returned changed_files.source = %v, want %s", cf["source"], tt.wantSource)
				}
				if _, ok := cf["update"].(map[string]any); !ok {
					t.Errorf("returned changed_files has no update: %v", cf)
				}
				if d.Extensions["merge_request"] == nil || d.MergeRequest["iid"] != int64(57) {
					t.Errorf("merge_request missing: %v", d.Extensions)
				}
			}
		})
	}
}

func TestMergeRequestWithoutSourceIsUnknown(t *testing.T) {
	e := newEngine(t)
	d, err := e.Evaluate(context.Background(), mustCompile(t, e, Rules{Filter: buildOnChange}),
		Input{Body: mrEvent(t), Header: pushHeader("Merge Request Hook")})
	if err != nil {
		t.Fatal(err)
	}
	want := gitlab.UnknownChangedFiles()
	if !d.Continue || d.ChangedFiles == nil || cmp.Diff(want, *d.ChangedFiles) != "" {
		t.Errorf("Continue %v, files %+v; want true on unknown (truncated) files", d.Continue, d.ChangedFiles)
	}
}

func TestMergeRequestAPIFailure(t *testing.T) {
	e := newEngine(t)
	src := &countingMR{err: errors.New("GitLab answered 503")}
	_, err := e.Evaluate(context.Background(), mustCompile(t, e, Rules{Filter: buildOnChange}),
		Input{Body: mrEvent(t), Header: pushHeader("Merge Request Hook"), ChangedFiles: src})
	if KindOf(err) != KindChangedFiles || !strings.Contains(err.Error(), "merge request !57: GitLab answered 503") {
		t.Fatalf("error %v (kind %s), want a changed files error naming the MR", err, KindOf(err))
	}
	// A label edit needs no file: the API being down does not matter.
	d, err := e.Evaluate(context.Background(), mustCompile(t, e, Rules{Filter: buildOnChange}),
		Input{Body: mrEvent(t, mrNoOldrev...), Header: pushHeader("Merge Request Hook"), ChangedFiles: src})
	if err != nil || d.Continue {
		t.Fatalf("label edit with the API down: %v, %v", d, err)
	}
}

func TestMergeRequestTyped(t *testing.T) {
	e := newEngine(t)
	for _, expr := range []string{
		`body.object_attributes.action == "update" && body.changes.labels.current.exists(l, l.title == "backend")`,
		`extensions.merge_request.iid > 0 && extensions.merge_request.labels.exists(l, l == "backend")`,
		`has(extensions.changed_files.update) && extensions.changed_files.update.count >= 0`,
		`body.object_attributes.last_commit.id == extensions.merge_request.sha`,
	} {
		if _, err := e.Compile(Rules{Filter: expr, Typed: true}); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
	for _, expr := range []string{
		`body.object_attributes.lables.size() > 0`,
		`extensions.merge_request.labels_add.size() > 0`,
		`extensions.merge_request.iid == "57"`,
	} {
		if _, err := e.Compile(Rules{Filter: expr, Typed: true}); err == nil {
			t.Errorf("%s: compiled, want a typed error", expr)
		}
	}
}
