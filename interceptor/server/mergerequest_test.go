package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/internal/gitlabtest"
)

// mrServer is an interceptor whose GitLab API is gitlabtest's HTTPS GitLab
// on loopback, serving MR !57 of project 42 with files diffs long and the
// compare of the documented update.
func mrServer(t testing.TB, files int) (*Server, *gitlabtest.Server) {
	t.Helper()
	gl := gitlabtest.NewTLSServer(t, "glpat-mr")
	var diffs []gitlabtest.Diff
	for i := range files {
		p := fmt.Sprintf("src/refunds/f%d.go", i)
		diffs = append(diffs, gitlabtest.Diff{OldPath: p, NewPath: p})
	}
	gl.SetMergeRequestDiffs("42", 57, diffs)
	gl.SetCompare("42", "839dc7c73c1f22b920b5eeacacc72503a86727a5", "87b8ab59efd0b066aec5c7419999f9abea3db40e",
		[]gitlabtest.Diff{{OldPath: "README.md", NewPath: "README.md"}})
	api, err := gitlabapi.New(gl.URL, "glpat-mr", gitlabapi.WithHTTPClient(gl.Client()),
		gitlabapi.WithRetries(1, time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	eng, pols := shippedPolicies(t)
	srv, err := New(Config{Engine: eng, Policies: pols, API: api, Secrets: mapSecrets{"team-a/gitlab-webhook/token": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, gl
}

// mrRequest is an interceptor request for a merge request payload of
// policies/testdata (a .json body, or a raw .http request's body).
func mrRequest(t testing.TB, name string, params map[string]any) *triggersv1.InterceptorRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "policies", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".http") {
		req, err := policy.ParseRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		b = req.Body
	}
	r := request(t, "push.json", "Merge Request Hook", params)
	r.Body = string(b)
	return r
}

func TestMergeRequestAPICallsPerEvent(t *testing.T) {
	build := map[string]any{"secretRef": tokenRef, "eventTypes": []any{"Merge Request Hook"}, "policy": "build-mr-on-change"}
	skipEdits := map[string]any{"secretRef": tokenRef, "eventTypes": []any{"Merge Request Hook"}, "policy": "skip-mr-metadata-edits"}
	with := func(base map[string]any, k string, v any) map[string]any { return merged(base, map[string]any{k: v}) }
	tests := []struct {
		name             string
		file             string
		params           map[string]any
		code             codes.Code
		message          string
		mrDiffs, compare int
	}{
		{"opened, 150 files: two pages", "mr-open.http", build, codes.OK, "", 2, 0},
		{"update with new commits", "mr_update.json", build, codes.OK, "", 2, 0},
		{"label edit: no call", "mr_label_edit.json", build, codes.FailedPrecondition, "policy build-mr-on-change did not return true", 0, 0},
		{"title edit: no call", "mr_title_edit.json", build, codes.FailedPrecondition, "did not return true", 0, 0},
		{"draft: no call", "mr_draft_open.json", build, codes.FailedPrecondition, "did not return true", 0, 0},
		{"merged: no call", "mr_merged.json", build, codes.FailedPrecondition, "did not return true", 0, 0},
		{"fork refused before any call", "mr_fork_open.json", build, codes.FailedPrecondition,
			"merge request !57 comes from a fork (project 977 into project 42): building it would run the fork's code with this project's credentials", 0, 0},
		{"fork allowed by the param", "mr_fork_open.json", with(build, "allowForks", true), codes.OK, "", 2, 0},
		{"skip-mr-metadata-edits: files fetched for the bindings", "mr_update.json", skipEdits, codes.OK, "", 2, 0},
		{"skip-mr-metadata-edits: label edit, no call", "mr_label_edit.json", skipEdits, codes.FailedPrecondition, "did not return true", 0, 0},
		{"inline filter on this update's files: one compare, then the bindings", "mr_update.json",
			map[string]any{"filter": `extensions.changed_files.update.all.exists(p, p == "README.md")`}, codes.OK, "", 2, 1},
		{"changedFiles off: no call", "mr_update.json", with(build, "changedFiles", "off"), codes.FailedPrecondition, "did not return true", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, gl := mrServer(t, 150)
			resp := srv.Process(context.Background(), mrRequest(t, tt.file, tt.params))
			if resp.Status.Code != tt.code || !strings.Contains(resp.Status.Message, tt.message) {
				t.Fatalf("status %s %q, want %s containing %q", resp.Status.Code, resp.Status.Message, tt.code, tt.message)
			}
			if mr, cmp := gl.Requests(); mr != tt.mrDiffs || cmp != tt.compare {
				t.Errorf("GitLab API requests: %d MR diff pages, %d compares; want %d and %d", mr, cmp, tt.mrDiffs, tt.compare)
			}
			if !resp.Continue {
				return
			}
			mr, _ := resp.Extensions["merge_request"].(map[string]any)
			cf, _ := resp.Extensions["changed_files"].(map[string]any)
			if fmt.Sprint(mr["iid"]) != "57" || fmt.Sprint(cf["count"]) != "150" || cf["source"] != "api" {
				t.Errorf("extensions: merge_request %v, changed_files count %v source %v", mr, cf["count"], cf["source"])
			}
			if tt.params["policy"] != nil && resp.Extensions["image_tag"] != "mr-57-87b8ab59" {
				t.Errorf("image_tag = %v, want mr-57-87b8ab59", resp.Extensions["image_tag"])
			}
		})
	}
}

func TestMergeRequestAPIDown(t *testing.T) {
	srv, gl := mrServer(t, 3)
	gl.FailNext(503, 503)
	resp := srv.Process(context.Background(), mrRequest(t, "mr_update.json",
		map[string]any{"policy": "build-mr-on-change"}))
	if resp.Status.Code != codes.Unavailable || !strings.Contains(resp.Status.Message, "merge request !57") ||
		!strings.Contains(resp.Status.Message, "failOpen") {
		t.Fatalf("status %s %q, want Unavailable naming the MR and failOpen", resp.Status.Code, resp.Status.Message)
	}
	gl.FailNext(503, 503)
	resp = srv.Process(context.Background(), mrRequest(t, "mr_update.json",
		map[string]any{"policy": "build-mr-on-change", "failOpen": true}))
	if !resp.Continue || resp.Extensions["build_reason"] != "changed files unknown or incomplete (none)" {
		t.Fatalf("failOpen: %+v", resp)
	}
}

// BenchmarkMergeRequestDecision measures one interceptor decision on an MR
// event: opened (its 150 files from the GitLab API, the first time over
// HTTPS on loopback, then from the cache), a label edit (no API call), a
// branch push of 6 files with the push policy, and an MR of 6 files, for
// comparison.
func BenchmarkMergeRequestDecision(b *testing.B) {
	srv, gl := mrServer(b, 150)
	cases := []struct {
		name string
		req  func() *triggersv1.InterceptorRequest
		code codes.Code
	}{
		{"mr-open/cached", func() *triggersv1.InterceptorRequest {
			return mrRequest(b, "mr-open.http", map[string]any{"policy": "build-mr-on-change"})
		}, codes.OK},
		{"mr-label-edit", func() *triggersv1.InterceptorRequest {
			return mrRequest(b, "mr_label_edit.json", map[string]any{"policy": "build-mr-on-change"})
		}, codes.FailedPrecondition},
		{"push", func() *triggersv1.InterceptorRequest {
			return request(b, "push.json", "Push Hook", map[string]any{"policy": "build-on-change"})
		}, codes.OK},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req := c.req()
			b.ReportAllocs()
			for b.Loop() {
				if resp := srv.Process(context.Background(), req); resp.Status.Code != c.code {
					b.Fatalf("status %s %q", resp.Status.Code, resp.Status.Message)
				}
			}
		})
	}
	// The same decision on an MR of 6 files, the size of the push above.
	small, _ := mrServer(b, 6)
	b.Run("mr-open-6-files/cached", func(b *testing.B) {
		req := mrRequest(b, "mr-open.http", map[string]any{"policy": "build-mr-on-change"})
		for b.Loop() {
			if resp := small.Process(context.Background(), req); !resp.Continue {
				b.Fatalf("status %s %q", resp.Status.Code, resp.Status.Message)
			}
		}
	})
	heads := 0 // across runs of the sub-benchmark: every head is new
	// Every iteration a new head SHA: the MR's two pages are fetched from
	// the HTTPS GitLab each time.
	b.Run("mr-open/uncached", func(b *testing.B) {
		req := mrRequest(b, "mr-open.http", map[string]any{"policy": "build-mr-on-change"})
		body := req.Body
		before, _ := gl.Requests()
		n := 0
		for b.Loop() {
			n++
			heads++
			req.Body = strings.ReplaceAll(body, "87b8ab59efd0b066aec5c7419999f9abea3db40e", fmt.Sprintf("%040x", heads))
			if resp := srv.Process(context.Background(), req); !resp.Continue {
				b.Fatalf("status %s %q", resp.Status.Code, resp.Status.Message)
			}
		}
		after, _ := gl.Requests()
		b.ReportMetric(float64(after-before)/float64(n), "api-calls/op")
	})
}
