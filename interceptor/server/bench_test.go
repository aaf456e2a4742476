package server

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkProcess is one accepted push through the whole interceptor
// request path (params, token, dedup, changed files, policy, project
// checks), each iteration a new delivery.
func BenchmarkProcess(b *testing.B) {
	f := newFixture(b)
	params := map[string]any{"secretRef": tokenRef, "eventTypes": []any{"Push Hook"}, "policy": "build-on-change"}
	req := request(b, "push.json", "Push Hook", params)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req.Header["Idempotency-Key"] = []string{fmt.Sprint("d-", i)}
		if r := f.srv.Process(context.Background(), req); !r.Continue {
			b.Fatal(r.Status)
		}
	}
}
