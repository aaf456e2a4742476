package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	tcel "github.com/tektoncd/triggers/pkg/interceptors/cel"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// blogFilter is the changed-files filter GitLab users run in Tekton
// Triggers' CEL interceptor (see ../shared/seeds): a regular expression over
// every path of every commit.
const blogFilter = `body.commits.map(c, c.added + c.modified + c.removed).exists(fs, true in fs.map(f, matches(f, "^(app|tests)|^Gemfile$")))`

func pushPayload(b *testing.B) []byte {
	b.Helper()
	body, err := os.ReadFile("../../interceptor/gitlab/testdata/push.json")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecision decides on one GitLab push with the same filter, end to
// end from the request's bytes: ciel's engine as the interceptor's server
// calls it (body decoded once into strings that point into the request's own
// buffer, push facts and changed files computed when an expression reads
// them or the decision continues, the program compiled once and cached, its
// cost tracked unless the estimate proves this request within the limit)
// against
// Tekton Triggers' CEL interceptor (InterceptorImpl.Process, which builds its
// CEL environment and compiles the expression on every request).
//
//	go test ./test/bench -run '^$' -bench Decision -benchmem
func BenchmarkDecision(b *testing.B) {
	body := pushPayload(b)
	header := http.Header{"X-Gitlab-Event": {"Push Hook"}, "Content-Type": {"application/json"}}

	b.Run("ciel", func(b *testing.B) {
		// As the interceptor command builds it (cmd/interceptor/command).
		eng, err := engine.New(engine.WithCostProof())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			// Compile is a cache lookup after the first request, as in the service.
			prog, err := eng.Compile(engine.Rules{Filter: blogFilter})
			if err != nil {
				b.Fatal(err)
			}
			// The Input of interceptor/server's decide: each request's body
			// is a buffer of its own (SharedBody) and, on the payload's
			// changed files, a rejected push returns no extensions
			// (DeferExtensions).
			d, err := eng.Evaluate(context.Background(), prog, engine.Input{Body: body, Header: header, RequestURL: "http://el/",
				SharedBody: true, DeferExtensions: true})
			if err != nil || d.Continue {
				b.Fatalf("decision %v, %v; want false", d, err)
			}
		}
	})

	b.Run("triggers", func(b *testing.B) {
		w := tcel.NewInterceptor(nil)
		req := &triggersv1.InterceptorRequest{
			Body:              string(body),
			Header:            header,
			InterceptorParams: map[string]any{"filter": blogFilter},
			Context:           &triggersv1.TriggerContext{EventURL: "http://el/", TriggerID: "namespaces/ci/triggers/build"},
		}
		b.ReportAllocs()
		for b.Loop() {
			resp := w.Process(context.Background(), req)
			if resp.Continue || resp.Status.Code != 9 { // FailedPrecondition: the filter is false
				b.Fatalf("response %+v; want the filter false", resp)
			}
		}
	})
}

// BenchmarkChangedFiles computes extensions.changed_files of pushes listing
// 1,000 and 10,000 paths (20 commits, as GitLab lists at most 20).
//
//	go test ./test/bench -run '^$' -bench ChangedFiles -benchmem
func BenchmarkChangedFiles(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		ev := bigPush(n)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cf := gitlab.PayloadChangedFiles(ev)
				if len(cf.All) == 0 {
					b.Fatal("no changed files")
				}
			}
		})
	}
}

// bigPush is a push of 20 commits touching n paths in all: each commit adds
// new files and modifies some of the previous commit's.
func bigPush(n int) *gitlab.PushEvent {
	const commits = 20
	ev := &gitlab.PushEvent{ObjectKind: "push", Ref: "refs/heads/main",
		Before: "9aa048df6ad5ec4d4fbc7ae9bb50a2e1b8c1d7b1", After: "c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1",
		TotalCommitsCount: commits}
	per := n / commits
	for c := range commits {
		var cm gitlab.Commit
		for i := range per {
			p := fmt.Sprintf("services/svc%03d/pkg/mod%02d/file%05d.go", i%100, c, c*per+i)
			cm.Added = append(cm.Added, p)
			if c > 0 && i%4 == 0 {
				cm.Modified = append(cm.Modified, fmt.Sprintf("services/svc%03d/pkg/mod%02d/file%05d.go", i%100, c-1, (c-1)*per+i))
			}
		}
		ev.Commits = append(ev.Commits, cm)
	}
	return ev
}
