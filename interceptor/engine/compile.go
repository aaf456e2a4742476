package engine

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/ciel-ci/ciel/interceptor/celenv"
	"github.com/ciel-ci/ciel/internal/lru"
)

// Rules are what a Trigger's interceptor params or a policy ask the engine
// to evaluate.
type Rules struct {
	// Filter must evaluate to a bool; empty means always continue, as in
	// Triggers' CEL interceptor.
	Filter string
	// Overlays are evaluated in order when the filter holds; each value is
	// written into the extensions at its key, a dotted path ("a.b" nests),
	// as Triggers does.
	Overlays []Overlay
	// Value is an expression of any type whose result is returned in
	// Decision.Value (cel-eval's bare-expression mode). Optional.
	Value string
	// Typed type-checks the expressions against the GitLab push and tag
	// push payloads (see the package's typed checking notes in typed.go):
	// body.comits becomes a compile error with its position.
	Typed bool
}

// Overlay is one key and its expression.
type Overlay struct {
	Key        string `json:"key"`
	Expression string `json:"expression"`
}

// Program is compiled Rules, ready to evaluate any number of times,
// concurrently.
type Program struct {
	filter   *compiled
	overlays []compiledOverlay
	value    *compiled
}

type compiledOverlay struct {
	key  string
	prog *compiled
}

// compiled is one expression's program with what the checker learnt.
type compiled struct {
	prog    cel.Program
	outType *types.Type
	est     checker.CostEstimate
	ast     *cel.Ast // for the per-request cost proof (costproof.go)
	proof   proof
	// readsExtensions is whether the expression names the extensions
	// variable anywhere (readsVar): only then may its value depend on
	// extensions.push and extensions.changed_files (Input.DeferExtensions).
	readsExtensions bool
	// fast is the filter's fast path (fastpath.go); nil when the
	// expression is outside its subset.
	fast *fastProg
}

// readsExtensions reports whether any expression of p names extensions.
func (p *Program) readsExtensions() bool {
	if p.filter != nil && p.filter.readsExtensions || p.value != nil && p.value.readsExtensions {
		return true
	}
	for _, o := range p.overlays {
		if o.prog.readsExtensions {
			return true
		}
	}
	return false
}

// readsVar reports whether the checked expression a names the variable
// name: an identifier of that name (".name", the root-scoped spelling,
// included) or a reference the checker resolved to it. An expression with
// neither cannot observe the variable; a comprehension variable of that
// name counts too, erring on the side of reading.
func readsVar(a *cel.Ast, name string) bool {
	native := a.NativeRep()
	for _, r := range native.ReferenceMap() {
		if r.Name == name {
			return true
		}
	}
	found := false
	celast.PostOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && strings.TrimPrefix(e.AsIdent(), ".") == name {
			found = true
		}
	}))
	return found
}

// EstimatedCost returns what the checker estimated for the filter (0, 0
// without one), assuming every list, map and string of the request as
// large as the body limit allows. hi is the worst case WithMaxEstimatedCost
// checks; lo is cel-go's minimum, which is not a lower bound (see
// compileExpr).
func (p *Program) EstimatedCost() (lo, hi uint64) {
	if p.filter == nil {
		return 0, 0
	}
	return p.filter.est.Min, p.filter.est.Max
}

// Compile compiles rules, or reports every expression that does not
// compile (a *CompileError). Each expression is compiled once per engine
// and cached: compiling the same rules again is a cache lookup.
func (e *Engine) Compile(r Rules) (*Program, error) {
	var errs []ExprError
	p := &Program{}
	if strings.TrimSpace(r.Filter) != "" {
		c, issues := e.compileExpr(r.Filter, r.Typed, true)
		if issues != "" {
			errs = append(errs, ExprError{Where: "filter", Expression: r.Filter, Issues: issues})
		}
		p.filter = c
	}
	seen := map[string]bool{}
	for i, o := range r.Overlays {
		where := fmt.Sprintf("overlays[%s]", o.Key)
		switch {
		case strings.TrimSpace(o.Key) == "":
			errs = append(errs, ExprError{Where: fmt.Sprintf("overlays[%d]", i), Expression: o.Expression, Issues: "the key is empty"})
			continue
		case seen[o.Key]:
			errs = append(errs, ExprError{Where: where, Expression: o.Expression, Issues: "the key is given twice"})
			continue
		case strings.TrimSpace(o.Expression) == "":
			errs = append(errs, ExprError{Where: where, Issues: "the expression is empty"})
			continue
		}
		seen[o.Key] = true
		c, issues := e.compileExpr(o.Expression, r.Typed, false)
		if issues != "" {
			errs = append(errs, ExprError{Where: where, Expression: o.Expression, Issues: issues})
			continue
		}
		p.overlays = append(p.overlays, compiledOverlay{key: o.Key, prog: c})
	}
	if strings.TrimSpace(r.Value) != "" {
		c, issues := e.compileExpr(r.Value, r.Typed, false)
		if issues != "" {
			errs = append(errs, ExprError{Where: "value", Expression: r.Value, Issues: issues})
		}
		p.value = c
	}
	if len(errs) > 0 {
		return nil, &CompileError{Errors: errs}
	}
	return p, nil
}

// compileExpr returns the cached program of expr or compiles it. issues is
// empty on success.
func (e *Engine) compileExpr(expr string, typed, filter bool) (*compiled, string) {
	key := cacheKey(expr, typed, filter)
	if c, ok := e.cache.get(key); ok {
		return c, ""
	}
	if typed {
		// Check in the typed environment; run what the ordinary one compiles.
		checked, iss := e.typedEnv.Compile(expr)
		if iss.Err() != nil {
			return nil, iss.Err().Error()
		}
		if filter && !isBoolish(checked.OutputType()) {
			return nil, fmt.Sprintf("a filter must be a bool, this expression is a %s", checked.OutputType())
		}
	}
	ast, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err().Error()
	}
	if filter && !isBoolish(ast.OutputType()) {
		return nil, fmt.Sprintf("a filter must be a bool, this expression is a %s", ast.OutputType())
	}
	est, err := e.env.EstimateCost(ast, sizeHints{max: e.maxBytes})
	if err != nil {
		return nil, fmt.Sprintf("estimating the cost: %v", err)
	}
	// No rejection by est.Min: it is not a lower bound. cel-go's
	// estimators size a result from its arguments as if they were valid
	// or constant (substring, slice, lists.range: celenv replaces those),
	// and nothing guarantees the others, so est.Min can exceed the cost of
	// every real evaluation. The runtime cost limit and deadline bound
	// each evaluation instead.
	if e.maxEst > 0 && est.Max > e.maxEst {
		return nil, e.overEstimate(ast, est)
	}
	prog, err := e.env.Program(ast,
		cel.CostLimit(e.costLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Sprintf("building the program: %v", err)
	}
	c := &compiled{prog: prog, outType: ast.OutputType(), est: est, ast: ast,
		readsExtensions: readsVar(ast, celenv.VarExtensions)}
	if filter {
		c.fast = newFastProg(ast.NativeRep())
	}
	e.cache.put(key, c)
	return c, ""
}

func isBoolish(t *types.Type) bool {
	return t == nil || t.IsExactType(types.BoolType) || t.IsExactType(types.DynType) ||
		t.Kind() == types.AnyKind || t.Kind() == types.ErrorKind
}

func cacheKey(expr string, typed, filter bool) string {
	var b strings.Builder
	b.Grow(len(expr) + 2)
	if typed {
		b.WriteByte('t')
	} else {
		b.WriteByte('d')
	}
	if filter {
		b.WriteByte('f')
	} else {
		b.WriteByte('v')
	}
	b.WriteString(expr)
	return b.String()
}

// sizeHints tells the cost estimator how large the request's values may
// be: as large as the body limit allows.
type sizeHints struct{ max uint64 }

// EstimateSize bounds only values read from the request (paths rooted at
// its variables). Anything else, notably a comprehension variable over a
// computed list (path "@items"), is left to cel-go, which derives its size
// from what computed it: cel-go asks this estimator first, so a hint here
// would hide a list element built as a+a behind the request's size.
func (h sizeHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if path := n.Path(); len(path) > 0 && requestRoots[path[0]] {
		return &checker.SizeEstimate{Min: 0, Max: h.max}
	}
	return nil
}

// requestRoots are the variables the request supplies.
var requestRoots = map[string]bool{"body": true, "header": true, "extensions": true, "requestURL": true}

func (sizeHints) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// programCache is the bounded LRU of compiled expressions, with counters.
type programCache struct {
	hits, misses atomic.Uint64
	c            *lru.Cache[*compiled]
}

func newProgramCache(max int) *programCache { return &programCache{c: lru.New[*compiled](max)} }

func (c *programCache) get(key string) (*compiled, bool) {
	v, ok := c.c.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

func (c *programCache) put(key string, v *compiled) { c.c.Add(key, v) }

func (c *programCache) len() int { return c.c.Len() }

// CacheStats returns how many compilations were answered from the program
// cache (hits) and how many compiled (misses), since the engine was built.
func (e *Engine) CacheStats() (hits, misses uint64) {
	return e.cache.hits.Load(), e.cache.misses.Load()
}
