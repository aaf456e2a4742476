package celcompat_test

import (
	"flag"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	genDuration = flag.Duration("gen.duration", 0, "run TestGenerated for this long with fresh seeds instead of its fixed seeds (e.g. -gen.duration=10m)")
	genCount    = flag.Int("gen.count", 300, "how many expressions TestGenerated compares with its fixed seeds")
)

// genRequests are the generator's payloads as each interceptor receives
// them (Triggers also receives ciel's extensions of a push).
type genRequest struct {
	payload  genPayload
	ciel     request
	triggers request
}

func genRequests(t testing.TB, h *harness) []genRequest {
	t.Helper()
	ps, err := genPayloads()
	if err != nil {
		t.Fatal(err)
	}
	var out []genRequest
	for _, p := range ps {
		hdr := http.Header{"X-Gitlab-Event": {p.event}, "X-Gitlab-Token": {"s3cret"}, "Content-Type": {"application/json"}}
		req := request{body: p.body, header: hdr, url: requestURL, ext: map[string]any{"note": "from an earlier interceptor"}}
		out = append(out, genRequest{payload: p, ciel: req, triggers: h.triggersRequest(t, req)})
	}
	return out
}

// compareGenerated evaluates expr on both sides; it returns a description
// of the difference, "" when they agree, and whether the difference is a
// deliberate one (docs/cel-reference.md, "Differences from Triggers").
func compareGenerated(h *harness, r genRequest, expr string) (diff string, deliberate string) {
	want, tmsg := h.runTriggers(r.triggers, expr)
	got, cmsg := h.runCiel(r.ciel, expr)
	if d := cmp.Diff(want, got); d != "" {
		if why := deliberateDifference(expr, want, got, tmsg, cmsg); why != "" {
			return "", why
		}
		return d + "\ntriggers: " + tmsg + "\nciel: " + cmsg, ""
	}
	return "", ""
}

// deliberateDifference recognises the documented differences.
func deliberateDifference(expr string, triggers, ciel outcome, tmsg, cmsg string) string {
	switch {
	case strings.Contains(expr, "truncate(") && (strings.Contains(tmsg, "invalid UTF-8") || triggers.JSON != ciel.JSON):
		return "truncate counts characters, Triggers bytes"
	case ciel.Err && strings.Contains(cmsg, "cost limit of") && strings.Contains(cmsg, "exceeded"):
		return "ciel bounds each evaluation's cost; Triggers does not"
	}
	return ""
}

// TestGenerated compares random well-typed expressions built from the
// Triggers function set, cel-go's extension libraries and the paths of
// GitLab payloads, in Triggers' interceptor and in ciel's engine. It runs
// fixed seeds in the normal suite; -gen.duration runs fresh seeds for that
// long (go test ./test/celcompat -run TestGenerated -gen.duration=10m).
func TestGenerated(t *testing.T) {
	h := newHarness(t)
	reqs := genRequests(t, h)
	seed := uint64(19)
	deadline := time.Time{}
	if *genDuration > 0 {
		seed = uint64(time.Now().UnixNano())
		deadline = time.Now().Add(*genDuration)
	}
	r := rand.New(rand.NewPCG(seed, seed>>1))
	var compared int
	deliberate := map[string]int{}
	start := time.Now()
	for i := 0; ; i++ {
		if deadline.IsZero() && i >= *genCount || !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		req := reqs[r.IntN(len(reqs))]
		expr := generate(r, req.payload)
		diff, why := compareGenerated(h, req, expr)
		compared++
		if why != "" {
			deliberate[why]++
			t.Logf("deliberate difference (%s): %s on %s", why, expr, req.payload.file)
		}
		if diff != "" {
			t.Errorf("%s on %s: Triggers and ciel differ (-triggers +ciel):\n%s", expr, req.payload.file, diff)
		}
	}
	t.Logf("compared %d generated expressions in %s (seed %d); deliberate differences: %v", compared, time.Since(start).Round(time.Second), seed, deliberate)
}

// FuzzGenerated is TestGenerated under the fuzzer: the input seeds the
// generator and picks the payload (go test ./test/celcompat -run '^$'
// -fuzz FuzzGenerated).
func FuzzGenerated(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*7)
	}
	h := newHarness(f)
	reqs := genRequests(f, h)
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		req := reqs[r.IntN(len(reqs))]
		expr := generate(r, req.payload)
		if diff, _ := compareGenerated(h, req, expr); diff != "" {
			t.Errorf("%s on %s: Triggers and ciel differ (-triggers +ciel):\n%s", expr, req.payload.file, diff)
		}
	})
}
