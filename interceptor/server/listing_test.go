package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// manyPaths is a push of one commit adding n paths and modifying one.
func manyPaths(n int) string {
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("services/svc%03d/file%05d.go", i%100, i)
	}
	added, _ := json.Marshal(paths)
	return `{"object_kind":"push","ref":"refs/heads/main","before":"9aa048df6ad5ec4d4fbc7ae9bb50a2e1b8c1d7b1",` +
		`"after":"c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1","checkout_sha":"c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1","total_commits_count":1,` +
		`"project":{"id":1,"path_with_namespace":"g/p","default_branch":"main"},` +
		`"commits":[{"id":"c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1","message":"m","added":` + string(added) + `,"modified":["README.md"],"removed":[]}]}`
}

// TestMaxListedPaths: the response lists at most maxListedPaths paths per
// list, with exact counts and listed_truncated; the filter saw every path.
func TestMaxListedPaths(t *testing.T) {
	const n = 1500
	body := manyPaths(n)
	f := newFixture(t)
	for _, tc := range []struct {
		name      string
		param     any // nil: absent
		wantAll   int
		wantAdded int
		wantCut   bool
	}{
		{"default 1000", nil, 1000, 1000, true},
		{"bound 2", 2, 2, 2, true},
		{"zero lists none", 0, 0, 0, true},
		{"minus one lists every path", -1, n + 1, n, false},
		{"bound above the lists", 5000, n + 1, n, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]any{"filter": fmt.Sprintf("extensions.changed_files.all.size() == %d && extensions.changed_files.count == %d", n+1, n+1)}
			if tc.param != nil {
				params["maxListedPaths"] = tc.param
			}
			req := request(t, "push.json", "Push Hook", params)
			req.Body = body
			resp := f.srv.Process(context.Background(), req)
			if !resp.Continue {
				t.Fatalf("the filter did not see every path: %+v", resp.Status)
			}
			// As the EventListener reads it.
			b, _ := json.Marshal(resp)
			var got triggersv1.InterceptorResponse
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			cf := got.Extensions["changed_files"].(map[string]any)
			if l := len(cf["all"].([]any)); l != tc.wantAll {
				t.Errorf("all lists %d paths, want %d", l, tc.wantAll)
			}
			if l := len(cf["added"].([]any)); l != tc.wantAdded {
				t.Errorf("added lists %d paths, want %d", l, tc.wantAdded)
			}
			if diff := cmp.Diff(map[string]any{"all": float64(n + 1), "added": float64(n), "modified": float64(1), "removed": float64(0)}, cf["counts"]); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if cf["listed_truncated"] != tc.wantCut || cf["count"] != float64(n+1) || cf["truncated"] != false {
				t.Errorf("listed_truncated %v (want %v), count %v, truncated %v", cf["listed_truncated"], tc.wantCut, cf["count"], cf["truncated"])
			}
		})
	}
	for _, bad := range []any{-2, "all", 1.5} {
		req := request(t, "push.json", "Push Hook", map[string]any{"maxListedPaths": bad})
		if resp := f.srv.Process(context.Background(), req); resp.Continue || !strings.Contains(resp.Status.Message, "maxListedPaths") {
			t.Errorf("maxListedPaths %v: %+v", bad, resp.Status)
		}
	}
}

// TestListingKeysMatchDocs keeps the response-only table of
// docs/extensions.md in step with listChangedFiles.
func TestListingKeysMatchDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "extensions.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## What the response carries")
	if !ok {
		t.Fatal("docs/extensions.md has no section on what the response carries")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(strings.Split(line, "|")[1], -1) {
			documented = append(documented, m[1])
		}
	}
	cf := gitlab.ChangedFiles{All: []string{"a"}, Added: []string{"a"}}.Map()
	listed := listChangedFiles(map[string]any{"changed_files": cf}, 0)["changed_files"].(map[string]any)
	var keys []string
	for k := range listed {
		if _, inCEL := cf[k]; !inCEL || slices.Contains(changedFilesLists[:], k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	slices.Sort(documented)
	if diff := cmp.Diff(documented, keys); diff != "" {
		t.Errorf("response-only keys (-docs/extensions.md +listChangedFiles):\n%s", diff)
	}
	if counts := listed["counts"].(map[string]any); len(counts) != len(changedFilesLists) {
		t.Errorf("counts %v: want one per list", counts)
	}
}
