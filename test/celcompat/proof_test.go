package celcompat_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

// TestGeneratedFastPaths runs the generator's expressions through ciel's
// engine as cel-eval runs it (every expression tracked, extensions computed
// first) and as the interceptor runs it (engine.WithCostProof: untracked
// where the estimate proves the request within the limit, by its largest
// value or by the paths the expression reads; engine.Input.DeferExtensions:
// a push's extensions left for a decision that continues when no
// expression names them), at cost limits from tight to the default: the
// outcome, the value, the error and the extensions of a decision that
// continues must be the same. At a tight limit a run left untracked where
// tracking would stop it would succeed: the cost proof's soundness over
// every shape the generator builds.
func TestGeneratedFastPaths(t *testing.T) {
	h := newHarness(t)
	reqs := genRequests(t, h)
	r := rand.New(rand.NewPCG(25, 12))
	compared, limited := 0, 0
	for _, limit := range []uint64{300, 5_000, engine.DefaultCostLimit} {
		plain, err := engine.New(engine.WithSecretGetter(cielSecrets{}), engine.WithTimeout(time.Minute), engine.WithCostLimit(limit))
		if err != nil {
			t.Fatal(err)
		}
		fast, err := engine.New(engine.WithSecretGetter(cielSecrets{}), engine.WithTimeout(time.Minute), engine.WithCostLimit(limit),
			engine.WithCostProof())
		if err != nil {
			t.Fatal(err)
		}
		for range *genCount {
			req := reqs[r.IntN(len(reqs))]
			expr := generate(r, req.payload)
			for _, rules := range []engine.Rules{{Value: expr}, {Filter: "false", Value: expr}} {
				pp, err := plain.Compile(rules)
				if err != nil {
					continue // does not compile: nothing to compare
				}
				pf, err := fast.Compile(rules)
				if err != nil {
					t.Fatalf("%s: compiles without the cost proof, not with it: %v", expr, err)
				}
				in := req.ciel.input()
				want, wantErr := plain.Evaluate(context.Background(), pp, in)
				in.DeferExtensions = true
				got, gotErr := fast.Evaluate(context.Background(), pf, in)
				compared++
				if engine.KindOf(wantErr) == engine.KindLimit {
					limited++
				}
				if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() &&
					!trackerPanic(wantErr, gotErr) {
					t.Errorf("limit %d, %s on %s: error %v, tracked without deferral %v", limit, expr, req.payload.file, gotErr, wantErr)
					continue
				}
				if wantErr != nil {
					continue
				}
				if string(got.Value) != string(want.Value) || got.Continue != want.Continue {
					t.Errorf("limit %d, %s on %s: value %s (continue %v), want %s (%v)", limit, expr, req.payload.file,
						got.Value, got.Continue, want.Value, want.Continue)
				}
				if want.Continue {
					// Cost counts tracked expressions only under the proof.
					opt := cmpopts.IgnoreFields(engine.Decision{}, "Cost", "Event")
					if d := cmp.Diff(want, got, opt, cmpopts.EquateEmpty()); d != "" {
						t.Errorf("limit %d, %s on %s: decision differs (-plain +fast):\n%s", limit, expr, req.payload.file, d)
					}
				}
			}
		}
	}
	if limited == 0 {
		t.Fatal("no evaluation reached the cost limit: the tight limits check nothing")
	}
	t.Logf("compared %d evaluations, %d stopped by the cost limit", compared, limited)
}

// trackerPanic recognises one difference of cel-go v0.31 itself between a
// tracked and an untracked evaluation that both fail: its cost tracker
// casts the argument of some extension functions (sort, on the error of
// slice) without checking, and the evaluation reports that panic as an
// internal error instead of the argument's error, which the untracked run
// reports. Both fail, with the same kind.
func trackerPanic(tracked, untracked error) bool {
	return engine.KindOf(tracked) == engine.KindOf(untracked) &&
		strings.Contains(tracked.Error(), "internal error: interface conversion: *types.Err is not")
}
