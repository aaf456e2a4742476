package gitlab

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkDecode measures Decode on fixtures (typed event and decoded
// tree; with_maps also builds Body's maps), next to encoding/json's
// Unmarshal into map[string]any (what Tekton Triggers' CEL interceptor does
// per request, without any type checking) as the baseline.
func BenchmarkDecode(b *testing.B) {
	for _, fx := range []struct{ file, header string }{
		{"push.json", HeaderPush},
		{"truncated_push.json", HeaderPush},
		{"tag_push.json", HeaderTagPush},
		{"merge_request.json", "Merge Request Hook"},
	} {
		body := readFixture(b, fx.file)
		b.Run(fx.file, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(fx.header, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same, with the maps encoding/json gives built too (Body): what
		// a decision costs when cel-go reads the body.
		b.Run(fx.file+"/with_maps", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := Decode(fx.header, body)
				if err != nil || ev.Body() == nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fx.file+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeLargePush decodes a push listing 10k changed files (about
// 400 KB) and computes its facts and changed files: the per-webhook work
// this package does, at the top of the realistic range.
func BenchmarkDecodeLargePush(b *testing.B) {
	body, err := json.Marshal(largePush(10000))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := Decode(HeaderPush, body)
		if err != nil {
			b.Fatal(err)
		}
		_ = ev.Push.Facts().Map()
		_ = PayloadChangedFiles(ev.Push).Map()
	}
}

func BenchmarkFacts(b *testing.B) {
	ev, err := Decode(HeaderTagPush, readFixture(b, "tag_push.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = ev.Push.Facts().Map()
	}
}

// BenchmarkPayloadChangedFiles measures the changed-files computation at 1k
// and 10k paths over 20 commits (GitLab's cap), a tenth of them touched by
// two commits; /map adds the conversion CEL needs.
func BenchmarkPayloadChangedFiles(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		e := largePush(n)
		name := fmt.Sprintf("%dk", n/1000)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = PayloadChangedFiles(e)
			}
		})
		b.Run(name+"/map", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = PayloadChangedFiles(e).Map()
			}
		})
	}
}

// largePush builds a push of 20 commits listing n paths in all: each commit
// adds and modifies its own files, and every tenth path of the previous
// commit is modified or removed again.
func largePush(n int) *PushEvent {
	const commits = 20
	e := &PushEvent{ObjectKind: "push", EventName: "push", Ref: "refs/heads/main", Before: shaA, After: shaB,
		CheckoutSHA: shaB, TotalCommitsCount: commits, Commits: make([]Commit, commits)}
	per := n / commits
	for c := range e.Commits {
		cm := &e.Commits[c]
		cm.ID = fmt.Sprintf("%040x", c+1)
		for i := 0; i < per; i++ {
			p := fmt.Sprintf("services/svc%02d/internal/pkg%03d/file%05d.go", c, i%100, i)
			switch {
			case c > 0 && i%10 == 0:
				prev := fmt.Sprintf("services/svc%02d/internal/pkg%03d/file%05d.go", c-1, i%100, i)
				if i%20 == 0 {
					cm.Removed = append(cm.Removed, prev)
				} else {
					cm.Modified = append(cm.Modified, prev)
				}
			case i%3 == 0:
				cm.Modified = append(cm.Modified, p)
			default:
				cm.Added = append(cm.Added, p)
			}
		}
	}
	return e
}
