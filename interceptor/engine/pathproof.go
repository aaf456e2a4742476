package engine

import (
	"context"
	"math"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// The cost proof by paths.
//
// The proof of costproof.go gives every value of the request the size of
// its largest: on a push whose largest string is a 94-byte URL, a filter
// looping over commits, then over paths, then matching each, is estimated
// as if there were 128 commits of 128 paths of 128 bytes, and is not
// proven. The path proof measures, per request, the largest value at each
// path the expression reads (body.commits, body.commits.@items.added: the
// paths cel-go's estimator names, measured over every element a wildcard
// stands for) and estimates the expression with those sizes, rounded up to
// powers of two so that one estimate serves every request of the same
// size classes (pathProof.verdicts).
//
// Values the expression computes (a concatenation of lists, a map macro's
// result, an element of either) have no request path; cel-go leaves their
// size unknown, hence an unbounded estimate. growthBound bounds them when
// every operation the expression can call either returns a scalar (bool,
// number, timestamp, duration, type), selects one of its arguments or one
// of their elements (conditional, index, dyn), or concatenates (`+` on
// strings, bytes or lists): then no value is larger than the request's
// largest value or literal, S, times 2^k, k the number of concatenations
// in the expression — each concatenation at most adds the sizes of two
// values computed before it (a value is never its own operand: CEL has no
// recursion), except a macro's accumulator `@result + [x]`, which grows by
// one element per iteration, so no more than the list iterated. Any other
// operation (a function returning a string, a list or a map that it
// builds, such as split, join, replace or marshalJSON) or any other use of
// an accumulator leaves computed values unbounded: no path proof.
// TestPathProofSound and TestCostProofSound check every untracked run
// against the tracked cost.

// maxPathWalk bounds the values one request's path walk visits: beyond,
// the request runs tracked (the walk would cost what tracking costs).
const maxPathWalk = 4096

// maxPathProofSize is the largest request value (requestSize) at which the
// path proof is tried: the request's walk stops at the first larger value,
// so a monorepo push (lists of thousands of paths) costs no walk of its
// body. The largest value sizes the values an expression computes
// (growthBound): past it, estimates of the filters that concatenate are
// over the limit anyway.
const maxPathProofSize = 1 << 10

// maxVerdicts bounds the size classes remembered per expression; beyond,
// requests of new classes run tracked (no estimate is computed for them).
const maxVerdicts = 256

// pathProof is what an expression's path proof needs, found once.
type pathProof struct {
	// paths are the request paths the estimator asks sizes of; keys are
	// the same joined by NUL, as pathHints looks them up.
	paths [][]string
	keys  []string
	// growth is 2^k (growthBound); 0 when computed values are unbounded.
	growth uint64
	// literal is the largest literal: string or bytes length, list or map
	// entries.
	literal uint64

	// verdicts maps size classes to the estimate's maximum; read without
	// a lock, replaced by a copy (under mu) when a class is added.
	verdicts atomic.Pointer[map[string]uint64]
	mu       sync.Mutex
}

// preparePaths records the request paths c's estimate reads and the bound
// on its computed values.
func (e *Engine) preparePaths(c *compiled) {
	pp := &c.proof.paths
	rec := &pathRecorder{seen: map[string]bool{}}
	if _, err := e.env.EstimateCost(c.ast, rec); err != nil {
		return
	}
	pp.paths = rec.paths
	for _, p := range pp.paths {
		pp.keys = append(pp.keys, strings.Join(p, "\x00"))
	}
	pp.growth, pp.literal = e.growthBound(c.ast)
	pp.verdicts.Store(&map[string]uint64{})
}

// pathRecorder is an estimator that records the request paths it is asked
// about (any size will do: the set of nodes asked does not depend on it).
type pathRecorder struct {
	seen  map[string]bool
	paths [][]string
}

func (r *pathRecorder) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 || !requestRoots[path[0]] {
		return nil
	}
	if key := strings.Join(path, "\x00"); !r.seen[key] {
		r.seen[key] = true
		r.paths = append(r.paths, append([]string(nil), path...))
	}
	return &checker.SizeEstimate{Min: 0, Max: 1}
}

func (*pathRecorder) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// pathHints sizes request paths by their measured classes, other request
// values by the request's largest, and computed values by the growth
// bound (nil, unknown, without one).
type pathHints struct {
	sizes    map[string]uint64
	max      uint64
	computed uint64
}

func (h pathHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) > 0 && requestRoots[path[0]] {
		if s, ok := h.sizes[strings.Join(path, "\x00")]; ok {
			return &checker.SizeEstimate{Min: 0, Max: s}
		}
		return &checker.SizeEstimate{Min: 0, Max: h.max}
	}
	if h.computed > 0 {
		return &checker.SizeEstimate{Min: 0, Max: h.computed}
	}
	return nil
}

func (pathHints) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// class rounds a size up to a power of two (its exponent), so that the
// estimate at 2^class bounds every size of the class.
func class(n uint64) uint8 { return uint8(bits.Len64(n)) }

// classesOf measures req along pp's paths: the size classes of the
// request's largest value and of each path, appended to key, or false
// when a value cannot be measured or the walk is too long.
func (pp *pathProof) classesOf(req *request, key []byte) ([]byte, bool) {
	if req.size > maxPathProofSize {
		return nil, false
	}
	key = append(key, class(req.size))
	w := pathWalk{budget: maxPathWalk}
	for _, p := range pp.paths {
		n, ok := w.measure(req.root(p[0]), p[1:])
		if !ok {
			return nil, false
		}
		key = append(key, class(n))
	}
	return key, true
}

// hints are the estimator's sizes for the classes of classesOf, or false
// when the bound of computed values overflows.
func (pp *pathProof) hints(classes []byte) (pathHints, bool) {
	h := pathHints{sizes: make(map[string]uint64, len(pp.keys)), max: 1 << classes[0]}
	for i, k := range pp.keys {
		h.sizes[k] = 1 << classes[i+1]
	}
	if pp.growth > 0 {
		s := max(h.max, pp.literal)
		if s > math.MaxUint64/pp.growth {
			return pathHints{}, false
		}
		h.computed = s * pp.growth
	}
	return h, true
}

// pathProven returns c's estimate at req's path sizes and whether it is
// within the limit.
func (e *Engine) pathProven(c *compiled, req *request) (uint64, bool) {
	pp := &c.proof.paths
	verdicts := pp.verdicts.Load()
	if verdicts == nil || len(pp.paths) == 0 {
		return 0, false
	}
	var buf [32]byte
	classes, ok := pp.classesOf(req, buf[:0])
	if !ok {
		return 0, false
	}
	est, known := (*verdicts)[string(classes)] // no allocation for the lookup
	if !known && len(*verdicts) >= maxVerdicts {
		return 0, false // a new class past the bound: tracked, not estimated
	}
	if !known {
		est = math.MaxUint64
		if h, ok := pp.hints(classes); ok {
			if ce, err := e.env.EstimateCost(c.ast, h); err == nil {
				est = ce.Max
			}
		}
		pp.mu.Lock()
		if old := *pp.verdicts.Load(); len(old) < maxVerdicts {
			m := make(map[string]uint64, len(old)+1)
			for k, v := range old {
				m[k] = v
			}
			m[string(classes)] = est
			pp.verdicts.Store(&m)
		}
		pp.mu.Unlock()
	}
	return est, est <= e.costLimit/proofMargin
}

// pathWalk measures the largest value at a path.
type pathWalk struct{ budget int }

// spend counts one value visited, and reports whether the budget allows it.
func (w *pathWalk) spend() bool {
	w.budget--
	return w.budget >= 0
}

func isWildcard(seg string) bool { return strings.HasPrefix(seg, "@") }

// measure returns the largest size among the values at path below v: a
// field selects a map's entry; a wildcard stands, on a list, for its
// elements (whatever the wildcard: cel-go names the elements of a dyn
// range @keys or @values, and an index @items or @values), on a map, for
// its keys (@keys), its values (@values), or every value nested in it at
// any depth (@items and any other: cel-go's index of a dyn value, and
// celenv's header.@items, a string in one of the header's lists of
// values). Each is a superset of what an estimator may mean by it, so no
// reading of a path is larger than what it measures. false: a value of a
// type the walk does not know, or the budget is spent.
func (w *pathWalk) measure(v any, path []string) (uint64, bool) {
	if !w.spend() {
		return 0, false
	}
	if len(path) == 0 {
		return valueSize(v)
	}
	seg, rest := path[0], path[1:]
	if isWildcard(seg) {
		return w.wildcard(v, seg, rest)
	}
	switch v := v.(type) {
	case nil, bool, float64, int64, int, uint64, string, []any, []string:
		// Selecting a field of these is an error, not a value.
		return 0, true
	case map[string]any:
		if x, ok := v[seg]; ok {
			return w.measure(x, rest)
		}
		return 0, true
	case *gitlab.Object:
		if x, ok := v.Get(seg); ok {
			return w.measure(x, rest)
		}
		return 0, true
	case http.Header:
		// header.name reads the key as written (CEL map semantics).
		if x, ok := v[seg]; ok {
			return w.strings(x, rest)
		}
		return 0, true
	}
	return 0, false
}

// largest keeps the largest of the sizes it is given; add reports whether
// the size was measured, for a walk to stop at the first that was not.
type largest uint64

func (m *largest) add(n uint64, ok bool) bool {
	*m = max(*m, largest(n))
	return ok
}

// wildcard is measure at a wildcard segment seg of v.
func (w *pathWalk) wildcard(v any, seg string, rest []string) (uint64, bool) {
	var m largest
	switch v := v.(type) {
	case nil, bool, float64, int64, int, uint64, string:
		return 0, true
	case []any:
		for _, x := range v {
			if !m.add(w.measure(x, rest)) {
				return 0, false
			}
		}
		return uint64(m), true
	case []string:
		for _, x := range v {
			m.add(stringAt(x, rest), true)
		}
		return uint64(m), true
	case map[string]any:
		if n, ok, done := entries(v, seg, rest, w.measure); done {
			return n, ok
		}
	case *gitlab.Object:
		if n, ok, done := objectEntries(v, seg, rest, w.measure); done {
			return n, ok
		}
	case http.Header:
		if n, ok, done := entries(v, seg, rest, w.strings); done {
			return n, ok
		}
	}
	return w.below(v, rest)
}

// objectEntries is entries for a decoded object: every member counts, a
// key given twice included (an upper bound of what CEL reads).
func objectEntries(o *gitlab.Object, seg string, rest []string, value func(any, []string) (uint64, bool)) (n uint64, ok, done bool) {
	if seg != "@keys" && seg != "@values" {
		return 0, false, false
	}
	ok = true
	o.Range(func(k string, x any) bool {
		if seg == "@keys" {
			n = max(n, stringAt(k, rest))
			return true
		}
		size, good := value(x, rest)
		n, ok = max(n, size), good
		return good
	})
	if !ok {
		return 0, false, true
	}
	return n, true, true
}

// entries is wildcard on a map at @keys (the largest key at rest) or
// @values (the largest value, each measured at rest by value); done is false
// for another segment.
func entries[V any](m map[string]V, seg string, rest []string, value func(V, []string) (uint64, bool)) (n uint64, ok, done bool) {
	switch seg {
	case "@keys":
		for k := range m {
			n = max(n, stringAt(k, rest))
		}
		return n, true, true
	case "@values":
		for _, x := range m {
			size, ok := value(x, rest)
			if !ok {
				return 0, false, true
			}
			n = max(n, size)
		}
		return n, true, true
	}
	return 0, false, false
}

// below returns the largest size at rest among every value nested in v,
// v excluded.
func (w *pathWalk) below(v any, rest []string) (uint64, bool) {
	if !w.spend() {
		return 0, false
	}
	var m largest
	switch v := v.(type) {
	case nil, bool, float64, int64, int, uint64, string:
	case []any:
		for _, x := range v {
			if !m.add(w.measure(x, rest)) || !m.add(w.below(x, rest)) {
				return 0, false
			}
		}
	case []string:
		for _, x := range v {
			m.add(stringAt(x, rest), true)
		}
	case map[string]any:
		for k, x := range v {
			m.add(stringAt(k, rest), true)
			if !m.add(w.measure(x, rest)) || !m.add(w.below(x, rest)) {
				return 0, false
			}
		}
	case *gitlab.Object:
		good := true
		v.Range(func(k string, x any) bool {
			m.add(stringAt(k, rest), true)
			good = m.add(w.measure(x, rest)) && m.add(w.below(x, rest))
			return good
		})
		if !good {
			return 0, false
		}
	case http.Header:
		for k, x := range v {
			m.add(stringAt(k, rest), true)
			if !m.add(w.strings(x, rest)) {
				return 0, false
			}
			for _, s := range x { // below the list: its strings
				m.add(stringAt(s, rest), true)
			}
		}
	default:
		return 0, false
	}
	return uint64(m), true
}

// strings is measure for a list of strings (not boxed into an any).
func (w *pathWalk) strings(v []string, path []string) (uint64, bool) {
	if !w.spend() {
		return 0, false
	}
	switch {
	case len(path) == 0:
		return uint64(len(v)), true
	case !isWildcard(path[0]):
		return 0, true
	}
	var m uint64
	for _, x := range v {
		m = max(m, stringAt(x, path[1:]))
	}
	return m, true
}

// stringAt is measure for a string: its size at the end of the path, 0
// below it (a string has no fields or elements).
func stringAt(s string, path []string) uint64 {
	if len(path) == 0 {
		return uint64(len(s))
	}
	return 0
}

// valueSize is CEL's size of v bounded from above: bytes for a string
// (at least its characters), entries for a list or map, 0 for scalars.
func valueSize(v any) (uint64, bool) {
	switch v := v.(type) {
	case nil, bool, float64, int64, int, uint64:
		return 0, true
	case string:
		return uint64(len(v)), true
	case http.Header:
		return uint64(len(v)), true
	}
	n, ok := collectionLen(v)
	return uint64(n), ok
}

// collectionLen is the number of elements of a list or entries of a map, as the
// request's values hold them (CEL's size); ok is false for other values.
func collectionLen(v any) (int, bool) {
	switch v := v.(type) {
	case []any:
		return len(v), true
	case []string:
		return len(v), true
	case map[string]any:
		return len(v), true
	case *gitlab.Object:
		return v.Len(), true
	}
	return 0, false
}

// growthBound returns 2^k and the largest literal of the expression when
// its computed values are bounded (see the package notes above), else 0.
func (e *Engine) growthBound(a *cel.Ast) (growth, literal uint64) {
	native := a.NativeRep()
	refs := native.ReferenceMap()
	results := e.overloadResults()
	k := 0
	ok := true
	var walk func(x celast.Expr, accus map[string]bool)
	walk = func(x celast.Expr, accus map[string]bool) {
		if !ok {
			return
		}
		switch x.Kind() {
		case celast.LiteralKind:
			switch l := x.AsLiteral().(type) {
			case types.String:
				literal = max(literal, uint64(len(l)))
			case types.Bytes:
				literal = max(literal, uint64(len(l)))
			}
		case celast.ListKind:
			l := x.AsList()
			literal = max(literal, uint64(l.Size()))
			for _, el := range l.Elements() {
				walk(el, accus)
			}
		case celast.MapKind:
			m := x.AsMap()
			literal = max(literal, uint64(m.Size()))
			for _, en := range m.Entries() {
				me := en.AsMapEntry()
				walk(me.Key(), accus)
				walk(me.Value(), accus)
			}
		case celast.StructKind:
			ok = false // messages: not part of ciel's environment
		case celast.SelectKind:
			walk(x.AsSelect().Operand(), accus)
		case celast.IdentKind:
		case celast.ComprehensionKind:
			comp := x.AsComprehension()
			walk(comp.IterRange(), accus)
			walk(comp.AccuInit(), accus)
			inner := map[string]bool{}
			for n := range accus {
				inner[n] = true
			}
			inner[comp.AccuVar()] = isEmptyList(comp.AccuInit())
			walk(comp.LoopCondition(), inner)
			walk(comp.LoopStep(), inner)
			walk(comp.Result(), inner)
		case celast.CallKind:
			call := x.AsCall()
			if call.IsMemberFunction() {
				walk(call.Target(), accus)
			}
			for _, arg := range call.Args() {
				walk(arg, accus)
			}
			ref, found := refs[x.ID()]
			if !found || len(ref.OverloadIDs) == 0 {
				ok = false
				return
			}
			kind := callKind(ref.OverloadIDs, results)
			usesAccu := false
			for _, arg := range call.Args() {
				usesAccu = usesAccu || mentions(arg, accus)
			}
			switch kind {
			case callScalar, callSelect:
			case callConcat:
				args := call.Args()
				switch {
				case len(args) == 2 && args[0].Kind() == celast.IdentKind && accus[args[0].AsIdent()] &&
					args[1].Kind() == celast.ListKind && args[1].AsList().Size() == 1:
					// A macro's accumulator grows by one element per
					// iteration from an empty list: no larger than its range.
				case usesAccu:
					ok = false
				default:
					k++
				}
			default:
				ok = false
			}
		default:
			ok = false
		}
	}
	walk(native.Expr(), map[string]bool{})
	if !ok || k >= 62 {
		return 0, literal
	}
	return 1 << k, literal
}

// mentions reports whether x refers to one of the accumulators anywhere.
func mentions(x celast.Expr, accus map[string]bool) bool {
	found := false
	celast.PostOrderVisit(x, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind {
			if _, ok := accus[e.AsIdent()]; ok {
				found = true
			}
		}
	}))
	return found
}

func isEmptyList(x celast.Expr) bool {
	return x.Kind() == celast.ListKind && x.AsList().Size() == 0
}

type callClass int

const (
	callOther  callClass = iota
	callScalar           // every overload returns a bool, number, timestamp, duration or type
	callSelect           // returns an argument or one of its elements
	callConcat           // `+` on strings, bytes or lists (and maybe numbers)
)

// callKind classifies a call by the overloads the checker left possible.
func callKind(ids []string, results map[string]types.Kind) callClass {
	concat, sel := false, false
	for _, id := range ids {
		switch id {
		case overloads.AddString, overloads.AddBytes, overloads.AddList:
			concat = true
			continue
		case overloads.Conditional, overloads.IndexList, overloads.IndexMap, overloads.ToDyn:
			sel = true
			continue
		}
		k, known := results[id]
		if !known {
			return callOther
		}
		switch k {
		case types.BoolKind, types.IntKind, types.UintKind, types.DoubleKind, types.NullTypeKind,
			types.TimestampKind, types.DurationKind, types.TypeKind:
		default:
			return callOther
		}
	}
	switch {
	case concat && sel:
		return callOther
	case concat:
		return callConcat
	case sel:
		return callSelect
	}
	return callScalar
}

// overloadResults maps every overload of the environment to the kind of
// its result, once per engine.
func (e *Engine) overloadResults() map[string]types.Kind {
	e.resultsOnce.Do(func() {
		m := map[string]types.Kind{}
		for _, fn := range e.env.Functions() {
			for _, o := range fn.OverloadDecls() {
				if rt := o.ResultType(); rt != nil {
					m[o.ID()] = rt.Kind()
				}
			}
		}
		e.results = m
	})
	return e.results
}

// request is what the cost proofs measure of one request.
type request struct {
	// body is the decoded body's tree (gitlab.Event.Tree): what the
	// proofs and the fast path read; cel-go reads ev.Body().
	body       any
	ev         *gitlab.Event
	header     http.Header
	extensions map[string]any
	requestURL string
	// size is the largest value of all (requestSize), sizeUnknown if some
	// value cannot be measured.
	size uint64
	// act is the activation cel-go evaluates with, built by the first
	// evaluation that needs cel-go (the fast path reads the fields).
	act interpreter.Activation

	// The evaluation's context (evalContext): the caller's, the trigger's
	// namespace, the cost limit and the deadline of filter, overlays and
	// value together; ctx and cancel once built.
	parent    context.Context
	namespace string
	costLimit uint64
	deadline  time.Time
	ctx       context.Context
	cancel    context.CancelFunc
}

func (r *request) root(name string) any {
	switch name {
	case "body":
		return r.body
	case "header":
		return r.header
	case "extensions":
		return r.extensions
	case "requestURL":
		return r.requestURL
	}
	return nil
}
