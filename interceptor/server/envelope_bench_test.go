package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

// BenchmarkEnvelope reads a 4 MB InterceptorRequest (a push listing 100,000
// paths) as the server does — locate the body, decode the small parts,
// unescape the body in place — against encoding/json decoding it into
// Triggers' type and copying the body to []byte, as the server did before.
//
//	go test ./interceptor/server -run '^$' -bench Envelope -benchmem
func BenchmarkEnvelope(b *testing.B) {
	var paths strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&paths, `"services/svc%03d/pkg/mod%02d/file%05d.go",`, i%100, i/5000, i)
	}
	body := `{"object_kind":"push","commits":[{"message":"Generate\n\nall \"modules\"\n","added":[` + strings.TrimSuffix(paths.String(), ",") + `]}]}`
	req, err := json.Marshal(triggersv1.InterceptorRequest{Body: body,
		Header:            map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {"s3cret"}},
		InterceptorParams: map[string]any{"filter": "true"},
		Context:           &triggersv1.TriggerContext{EventURL: "http://el/", TriggerID: triggerID}})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, len(req))

	b.Run("ciel", func(b *testing.B) {
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			copy(buf, req) // the request buffer, refilled as a read would
			e, err := parseEnvelope(buf)
			if err != nil {
				b.Fatal(err)
			}
			if got := e.body(); len(got) != len(body) {
				b.Fatalf("body of %d bytes, want %d", len(got), len(body))
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			var r triggersv1.InterceptorRequest
			if err := json.Unmarshal(req, &r); err != nil {
				b.Fatal(err)
			}
			if got := []byte(r.Body); len(got) != len(body) {
				b.Fatalf("body of %d bytes, want %d", len(got), len(body))
			}
		}
	})
}
