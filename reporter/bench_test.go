package reporter

import (
	"fmt"
	"testing"

	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"

	"github.com/ciel-ci/ciel/reporter/gitlabstatus"
)

// BenchmarkObserve measures the informer event handler, which runs on the
// informers' goroutine for every PipelineRun event: an update of a run
// whose state was already posted (the common case: the controller rewrites
// status on every reconcile).
func BenchmarkObserve(b *testing.B) {
	r, err := New(&gitlabstatus.Client{})
	if err != nil {
		b.Fatal(err)
	}
	cl := &cluster{name: "bench", client: fake.NewSimpleClientset()}
	prs := make([]any, 1000)
	for i := range prs {
		pr := newPR(fmt.Sprintf("run-%d", i), t0, fmt.Sprintf("%040x", i+1))
		running(pr)
		prs[i] = pr
		r.observe(cl, pr, false)
	}
	r.mu.Lock()
	for _, e := range r.entries {
		e.posted, e.recorded = "running", "running"
	}
	r.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.observe(cl, prs[i%len(prs)], false)
	}
}
