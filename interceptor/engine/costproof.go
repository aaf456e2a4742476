package engine

import (
	"math"
	"net/http"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"

	"github.com/ciel-ci/ciel/interceptor/celenv"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// Evaluating without cost tracking.
//
// cel-go's runtime cost tracking observes every step of an evaluation: on
// a typical push filter it doubles the evaluation's time and allocations
// (BenchmarkDecisionParts). The checker's estimate bounds the cost of any
// evaluation whose lists, maps and strings are no larger than the sizes
// it is given. With WithCostProof the engine measures the largest list,
// map (entries) and string (bytes, at least its characters) of the request
// — body, header, extensions and requestURL — and when the estimate at
// that size is within the cost limit (with a margin, proofMargin), nothing the expression can do on
// this request may exceed the limit: it runs untracked. Otherwise, or when
// a value's size cannot be measured, or the expression calls a function
// whose estimate does not bound its cost (celenv.EstimateBounds:
// marshalJSON), it runs tracked as always. The
// deadline is enforced either way (the context is checked every
// interruptCheckFrequency comprehension steps).
//
// When no single size proves it, the proof by paths (pathproof.go) sizes
// each path the expression reads by its own largest value on this request.
//
// The estimate is computed once per expression and size class: the
// largest power of two whose estimate is within the limit is found by a
// binary search on the first evaluation, then each request costs one walk
// over its values, stopped as soon as a value is over that size.

// proofMargin is how far the estimate must stay under the limit. cel-go
// charges a field selected from a computed value (a call's result, an
// index) 2 at runtime and 1 in its estimate; every other step costs at
// runtime no more than estimated (TestCostProofSound checks both over
// every fixture). Twice the estimate bounds the runtime cost.
const proofMargin = 2

// Sizes searched: 2^minProofShift .. 2^maxProofShift.
const (
	minProofShift = 4
	maxProofShift = 30
)

// proof is what an expression's cost estimate allows.
type proof struct {
	once sync.Once
	// maxSize is the largest size of any list, map or string of the
	// request for which the estimate proves the cost within the limit; 0
	// when none does.
	maxSize uint64
	maxEst  uint64      // the estimate at maxSize
	free    cel.Program // the program without cost tracking
	paths   pathProof   // the proof by paths (pathproof.go)
}

// untracked returns the program to run without tracking when the request
// allows it (its largest value within the proven size, or its paths'
// sizes proven, pathproof.go), else nil.
// The estimate that proves it is returned with it.
func (e *Engine) untracked(c *compiled, req *request) (cel.Program, uint64) {
	if !e.proofReady(c) {
		return nil, 0
	}
	if c.proof.maxSize > 0 && req.size <= c.proof.maxSize {
		return c.proof.free, c.proof.maxEst
	}
	if est, ok := e.pathProven(c, req); ok {
		return c.proof.free, est
	}
	return nil, 0
}

// proofReady proves c once and reports whether it may ever run untracked.
func (e *Engine) proofReady(c *compiled) bool {
	if !e.costProof || c.ast == nil {
		return false
	}
	c.proof.once.Do(func() { e.prove(c) })
	return c.proof.free != nil
}

// prove finds the largest power-of-two size at which c's estimate is
// within the cost limit, and builds its untracked program.
func (e *Engine) prove(c *compiled) {
	if shadowsRequest(c.ast) {
		return // its paths name the variable, not the request: always tracked
	}
	for _, r := range c.ast.NativeRep().ReferenceMap() {
		for _, o := range r.OverloadIDs {
			if !celenv.EstimateBounds(o) {
				return // its estimate proves nothing: always tracked
			}
		}
	}
	within := func(shift int) bool {
		est, err := e.env.EstimateCost(c.ast, sizeHints{max: 1 << shift})
		return err == nil && est.Max <= e.costLimit/proofMargin
	}
	prog, err := e.env.Program(c.ast,
		cel.InterruptCheckFrequency(interruptCheckFrequency),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return
	}
	c.proof.free = prog
	e.preparePaths(c)
	lo, hi := minProofShift, maxProofShift
	if !within(lo) {
		return // no size proves it for every value: only the path proof may
	}
	for lo < hi { // within(lo) holds; find the largest such shift
		mid := (lo + hi + 1) / 2
		if within(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	c.proof.maxSize = 1 << lo
	if est, err := e.env.EstimateCost(c.ast, sizeHints{max: c.proof.maxSize}); err == nil {
		c.proof.maxEst = est.Max
	}
}

// sizeUnknown is returned by the walk for a value it cannot measure.
const sizeUnknown = math.MaxUint64

// requestSize returns the size of the largest list, map or string among
// the request's variables, or more than limit as soon as one is larger
// (sizeUnknown for a value of a type the walk does not know).
// bodySize is the body's size as its decoder measured it
// (gitlab.Decoder.DecodeSized), or -1 to walk the body.
func requestSize(limit uint64, ev *gitlab.Event, bodySize int, header http.Header, exts map[string]any, requestURL string) uint64 {
	w := sizeWalk{limit: limit}
	if bodySize >= 0 {
		w.count(bodySize)
	} else {
		w.value(ev.Tree())
	}
	w.str(requestURL)
	w.count(len(header))
	for k, vs := range header {
		w.str(k)
		w.count(len(vs))
		for _, v := range vs {
			w.str(v)
		}
		if w.over() {
			return w.max
		}
	}
	w.value(exts)
	return w.max
}

type sizeWalk struct {
	limit, max uint64
}

func (w *sizeWalk) over() bool { return w.max > w.limit }

func (w *sizeWalk) count(n int) {
	if u := uint64(n); u > w.max {
		w.max = u
	}
}

// str counts a string's bytes: at least its characters, CEL's size.
func (w *sizeWalk) str(s string) { w.count(len(s)) }

func (w *sizeWalk) value(v any) {
	if w.over() {
		return
	}
	switch v := v.(type) {
	case nil, bool, float64, int64, int, uint64:
	case string:
		w.str(v)
	case []any:
		w.count(len(v))
		for _, x := range v {
			w.value(x)
			if w.over() {
				return
			}
		}
	case []string:
		w.count(len(v))
		for _, x := range v {
			w.str(x)
		}
	case map[string]any:
		w.count(len(v))
		for k, x := range v {
			w.str(k)
			w.value(x)
			if w.over() {
				return
			}
		}
	case *gitlab.Object:
		w.count(v.Len())
		v.Range(func(k string, x any) bool {
			w.str(k)
			w.value(x)
			return !w.over()
		})
	default:
		w.max = sizeUnknown
	}
}

// maxProofSize is the largest request size (requestSize) any program of
// p may run untracked at, 0 if none (the request is then not measured):
// its proven size, or maxPathProofSize for the path proof.
func (e *Engine) maxProofSize(p *Program) uint64 {
	var m uint64
	consider := func(c *compiled) {
		if c == nil || !e.proofReady(c) {
			return
		}
		m = max(m, c.proof.maxSize)
		if len(c.proof.paths.paths) > 0 {
			m = max(m, maxPathProofSize)
		}
	}
	consider(p.filter)
	for _, o := range p.overlays {
		consider(o.prog)
	}
	consider(p.value)
	return m
}

// shadowsRequest reports whether a comprehension of a declares a variable
// named like one of the request's (`[x].exists(body, ...)`): the cost
// estimators name values by variable, so such a variable's paths would be
// sized as the request's.
func shadowsRequest(a *cel.Ast) bool {
	found := false
	celast.PostOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.ComprehensionKind {
			return
		}
		comp := e.AsComprehension()
		for _, name := range []string{comp.IterVar(), comp.IterVar2(), comp.AccuVar()} {
			if requestRoots[name] {
				found = true
			}
		}
	}))
	return found
}
