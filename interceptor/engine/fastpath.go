package engine

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	"github.com/ciel-ci/ciel/interceptor/celenv"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// The fast path evaluates a filter directly on the decoded body's Go values
// (its objects as decoded, gitlab.Object; []any, string, bool, float64) and
// the extensions' maps, without cel-go's
// interpreter: no ref.Val per value read, no frame per comprehension, the
// map macro's accumulator appended in place. It exists because cel-go's
// interpreter was the larger half of a decision once decoding and the cost
// tracker were made cheap (docs/performance.md, "Fourth pass": on the blog
// filter of BenchmarkDecision it takes the evaluation from about 20 µs and
// 135 allocations to a few µs).
//
// It is not a second CEL implementation: it covers a small subset of the
// checked AST (literals, the request variables and comprehension
// variables, field selection and has() on JSON objects, list literals, indexing and
// concatenation, comprehensions over lists, &&, ||, !, ?:, == and != on
// strings and bools, ordering and + on ints, in, size, matches with a
// constant pattern, startsWith, endsWith, contains) and, for anything
// else, answers "don't know". A program with a node outside the subset has
// no fast path; an evaluation that meets a value outside it (a missing key,
// a number, a header, any error cel-go would report or absorb) gives up and
// the engine runs cel-go on the same request, so every error, message and
// error-absorbing result is cel-go's own. The fast path only runs where the
// cost proof has shown that the request cannot exceed the cost limit
// (engine.eval), and it checks the deadline as cel-go does, every
// interruptCheckFrequency iterations. FuzzFastPath and TestFastPathAgrees
// compare it with cel-go on every fixture and a corpus of expressions.

// fastNode evaluates one node; ok is false when the fast path gives up.
type fastNode func(f *fastFrame) (v any, ok bool)

// fastProg is a filter compiled for the fast path.
type fastProg struct {
	root  fastNode
	slots int
}

// fastFrame is one evaluation's state.
type fastFrame struct {
	req   *request
	slots []any
	iters int
	inl   [8]any
	// accs are the accumulators of the comprehensions running, innermost
	// last; lists holds the headers of the lists they return, each used
	// once (listAt): both part of the frame's one allocation.
	accs   [4]accList
	nAccs  int
	lists  [8][]any
	nLists int
}

// newAcc returns an empty accumulator of capacity n, from the frame while
// it has one free.
func (f *fastFrame) newAcc(n int) *accList {
	if f.nAccs < len(f.accs) {
		a := &f.accs[f.nAccs]
		f.nAccs++
		a.items = make([]any, 0, n)
		return a
	}
	return &accList{items: make([]any, 0, n)}
}

// doneAcc returns a comprehension's accumulator as a []any value, and its
// frame slot to the next comprehension.
func (f *fastFrame) doneAcc(a *accList) any {
	items := a.items
	a.items = nil
	if f.nAccs > 0 && a == &f.accs[f.nAccs-1] {
		f.nAccs--
	}
	if f.nLists < len(f.lists) {
		f.lists[f.nLists] = items
		f.nLists++
		return listAt(&f.lists[f.nLists-1])
	}
	return items
}

// interrupted reports whether the caller cancelled the evaluation or its
// deadline passed, as cel-go's interrupt check would.
func (f *fastFrame) interrupted() bool {
	return f.req.parent.Err() != nil || !time.Now().Before(f.req.deadline)
}

// accList is a comprehension's list accumulator, owned by the
// comprehension: appended to in place, made a []any when the comprehension
// ends. The accumulator's name is not one a user can write, so no other
// expression holds it.
type accList struct{ items []any }

// eval runs p on req. ok is false when the fast path gives up.
func (p *fastProg) eval(req *request) (bool, bool) {
	f := &fastFrame{req: req}
	if p.slots <= len(f.inl) {
		f.slots = f.inl[:p.slots]
	} else {
		f.slots = make([]any, p.slots)
	}
	out, ok := p.root(f)
	if !ok {
		return false, false
	}
	b, ok := out.(bool)
	return b, ok
}

// newFastProg compiles a checked AST for the fast path; nil when a node is
// outside the subset.
func newFastProg(a *celast.AST) *fastProg {
	c := &fastCompiler{refs: a.ReferenceMap()}
	root := c.node(a.Expr())
	if root == nil || c.failed {
		return nil
	}
	return &fastProg{root: root, slots: c.maxSlots}
}

type fastScope struct {
	name string
	slot int
}

type fastCompiler struct {
	refs     map[int64]*celast.ReferenceInfo
	scopes   []fastScope
	maxSlots int
	failed   bool
}

func (c *fastCompiler) fail() fastNode { c.failed = true; return nil }

func (c *fastCompiler) node(e celast.Expr) fastNode {
	if c.failed {
		return nil
	}
	switch e.Kind() {
	case celast.LiteralKind:
		var v any
		switch l := e.AsLiteral().(type) {
		case types.String:
			v = string(l)
		case types.Bool:
			v = bool(l)
		case types.Int:
			v = int64(l)
		default:
			return c.fail()
		}
		return func(*fastFrame) (any, bool) { return v, true }
	case celast.IdentKind:
		return c.ident(e.AsIdent())
	case celast.SelectKind:
		return c.selectNode(e.AsSelect())
	case celast.ListKind:
		l := e.AsList()
		if len(l.OptionalIndices()) > 0 {
			return c.fail()
		}
		elems := make([]fastNode, 0, l.Size())
		for _, el := range l.Elements() {
			elems = append(elems, c.node(el))
		}
		if c.failed {
			return nil
		}
		return func(f *fastFrame) (any, bool) {
			out, ok := appendElems(f, make([]any, 0, len(elems)), elems)
			return out, ok
		}
	case celast.ComprehensionKind:
		return c.comprehension(e.AsComprehension())
	case celast.CallKind:
		return c.call(e.ID(), e.AsCall())
	}
	return c.fail()
}

func (c *fastCompiler) ident(name string) fastNode {
	for i := len(c.scopes) - 1; i >= 0; i-- {
		if c.scopes[i].name == name {
			slot := c.scopes[i].slot
			return func(f *fastFrame) (any, bool) { return f.slots[slot], true }
		}
	}
	switch name {
	case celenv.VarBody:
		return func(f *fastFrame) (any, bool) { return f.req.body, f.req.body != nil }
	case celenv.VarExtensions:
		return func(f *fastFrame) (any, bool) { return f.req.extensions, f.req.extensions != nil }
	case celenv.VarRequestURL:
		return func(f *fastFrame) (any, bool) { return f.req.requestURL, true }
	}
	// header is an http.Header, adapted by celenv: left to cel-go.
	return c.fail()
}

func (c *fastCompiler) selectNode(s celast.SelectExpr) fastNode {
	operand := c.node(s.Operand())
	if c.failed {
		return nil
	}
	field := s.FieldName()
	if s.IsTestOnly() {
		return func(f *fastFrame) (any, bool) {
			v, ok := operand(f)
			if !ok {
				return nil, false
			}
			_, has, isObj := fastField(v, field)
			return has, isObj
		}
	}
	return func(f *fastFrame) (any, bool) {
		v, ok := operand(f)
		if !ok {
			return nil, false
		}
		out, has, _ := fastField(v, field)
		if !has || out == nil {
			return nil, false // not an object, no such key, or null: cel-go's answer
		}
		return out, true
	}
}

// fastField reads key of a JSON object (a decoded *gitlab.Object or a map):
// its value, whether it has it, and whether v is an object at all.
func fastField(v any, key string) (val any, has, isObject bool) {
	switch o := v.(type) {
	case *gitlab.Object:
		val, has = o.Get(key)
		return val, has, true
	case map[string]any:
		val, has = o[key]
		return val, has, true
	}
	return nil, false, false
}

func (c *fastCompiler) comprehension(cx celast.ComprehensionExpr) fastNode {
	if cx.HasIterVar2() {
		return c.fail()
	}
	rng := c.node(cx.IterRange())
	accInit := cx.AccuInit()
	appendAcc := accInit.Kind() == celast.ListKind && accInit.AsList().Size() == 0
	var init fastNode
	if !appendAcc {
		init = c.node(accInit)
	}
	if c.failed {
		return nil
	}
	base := len(c.scopes)
	accSlot, iterSlot := base, base+1
	if base+2 > c.maxSlots {
		c.maxSlots = base + 2
	}
	c.scopes = append(c.scopes, fastScope{cx.AccuVar(), accSlot})
	// The loop condition and step see the iteration variable; the result
	// sees the accumulator only.
	c.scopes = append(c.scopes, fastScope{cx.IterVar(), iterSlot})
	cond := c.node(cx.LoopCondition())
	step := c.node(cx.LoopStep())
	c.scopes = c.scopes[:base+1]
	result := c.node(cx.Result())
	c.scopes = c.scopes[:base]
	if c.failed {
		return nil
	}
	return func(f *fastFrame) (any, bool) {
		r, ok := rng(f)
		if !ok {
			return nil, false
		}
		n := fastLen(r)
		if n < 0 {
			return nil, false // a map's keys come in no fixed order: cel-go's
		}
		var acc any
		if appendAcc {
			// map appends one element per iteration, filter at most one.
			acc = f.newAcc(n)
		} else if acc, ok = init(f); !ok {
			return nil, false
		}
		f.slots[accSlot] = acc
		for i := 0; i < n; i++ {
			f.slots[iterSlot] = fastIndex(r, i)
			if f.iters++; f.iters%interruptCheckFrequency == 0 && f.interrupted() {
				return nil, false // cel-go reports the deadline
			}
			cv, ok := cond(f)
			if !ok {
				return nil, false
			}
			if b, isBool := cv.(bool); !isBool {
				return nil, false
			} else if !b {
				break
			}
			if f.slots[accSlot], ok = step(f); !ok {
				return nil, false
			}
		}
		out, ok := result(f)
		if !ok {
			return nil, false
		}
		if l, isAcc := out.(*accList); isAcc {
			return f.doneAcc(l), true
		}
		if appendAcc {
			// The result did not return the accumulator: free its slot.
			if a, isAcc := f.slots[accSlot].(*accList); isAcc {
				f.doneAcc(a)
			}
		}
		return out, true
	}
}

// fastLen is the length of a list value; -1 for anything else.
func fastLen(v any) int {
	switch l := v.(type) {
	case []any:
		return len(l)
	case []string:
		return len(l)
	}
	return -1
}

func fastIndex(v any, i int) any {
	switch l := v.(type) {
	case []any:
		return l[i]
	case []string:
		return l[i]
	}
	return nil
}

// stdOverloads reports whether every overload the checker chose for a call
// is one of the standard library's: its id is one of names, or starts with
// one of them that ends in "_" (add_, less_, ...), or ends in "_size" for
// size. celenv's own overloads have ids of their own.
func (c *fastCompiler) stdOverloads(id int64, names ...string) bool {
	r, ok := c.refs[id]
	if !ok || len(r.OverloadIDs) == 0 {
		return false
	}
	for _, o := range r.OverloadIDs {
		std := false
		for _, n := range names {
			if o == n || strings.HasSuffix(n, "_") && strings.HasPrefix(o, n) || n == "size" && strings.HasSuffix(o, "_size") {
				std = true
				break
			}
		}
		if !std {
			return false
		}
	}
	return true
}

func (c *fastCompiler) call(id int64, call celast.CallExpr) fastNode {
	fn := call.FunctionName()
	var args []fastNode
	if call.IsMemberFunction() {
		args = append(args, c.node(call.Target()))
	}
	for _, a := range call.Args() {
		args = append(args, c.node(a))
	}
	if c.failed {
		return nil
	}
	switch {
	case fn == operators.LogicalAnd && len(args) == 2:
		return fastLogical(args[0], args[1], false)
	case fn == operators.LogicalOr && len(args) == 2:
		return fastLogical(args[0], args[1], true)
	case fn == operators.LogicalNot && len(args) == 1:
		a := args[0]
		return func(f *fastFrame) (any, bool) {
			v, ok := a(f)
			b, isBool := v.(bool)
			return !b, ok && isBool
		}
	case fn == operators.NotStrictlyFalse && len(args) == 1:
		a := args[0]
		return func(f *fastFrame) (any, bool) {
			v, ok := a(f)
			b, isBool := v.(bool)
			return b, ok && isBool
		}
	case fn == operators.Conditional && len(args) == 3:
		cond, yes, no := args[0], args[1], args[2]
		return func(f *fastFrame) (any, bool) {
			v, ok := cond(f)
			b, isBool := v.(bool)
			if !ok || !isBool {
				return nil, false
			}
			if b {
				return yes(f)
			}
			return no(f)
		}
	case (fn == operators.Equals || fn == operators.NotEquals) && len(args) == 2 && c.stdOverloads(id, "equals", "not_equals"):
		return fastEquals(args[0], args[1], fn == operators.NotEquals)
	case fn == operators.Add && len(args) == 2 && c.stdOverloads(id, "add_"):
		if lit := call.Args()[1]; lit.Kind() == celast.ListKind && len(lit.AsList().OptionalIndices()) == 0 {
			// accumulator + [e, ...]: the map and filter macros' step,
			// appended without building the one-element list.
			elems := make([]fastNode, 0, lit.AsList().Size())
			for _, el := range lit.AsList().Elements() {
				elems = append(elems, c.node(el))
			}
			if c.failed {
				return nil
			}
			return fastAppend(args[0], args[1], elems)
		}
		if ops := c.concat(call); ops != nil {
			return fastConcat(ops)
		}
		return fastAdd(args[0], args[1])
	case fn == operators.Index && len(args) == 2 && c.stdOverloads(id, "index_list", "index_map"):
		return fastIndexOp(args[0], args[1])
	case fn == operators.In && len(args) == 2 && c.stdOverloads(id, "in_"):
		return fastIn(args[0], args[1])
	case (fn == operators.Less || fn == operators.LessEquals || fn == operators.Greater || fn == operators.GreaterEquals) &&
		len(args) == 2 && c.stdOverloads(id, "less_", "greater_"):
		return fastCompareInts(fn, args[0], args[1])
	case fn == "size" && len(args) == 1 && c.stdOverloads(id, "size", "size_"):
		a := args[0]
		return func(f *fastFrame) (any, bool) {
			v, ok := a(f)
			if !ok {
				return nil, false
			}
			if s, isStr := v.(string); isStr {
				return int64(utf8.RuneCountInString(s)), true // CEL counts code points
			}
			n, ok := collectionLen(v)
			return int64(n), ok
		}
	case fn == "matches" && len(args) == 2 && c.stdOverloads(id, "matches", "matches_string"):
		pat := call.Args()[len(call.Args())-1]
		if pat.Kind() != celast.LiteralKind {
			return c.fail()
		}
		s, isStr := pat.AsLiteral().(types.String)
		if !isStr {
			return c.fail()
		}
		re, err := regexp.Compile(string(s))
		if err != nil {
			return c.fail() // cel-go reports it
		}
		pre := requiredPrefixes(string(s)) // regexprefix.go
		a := args[0]
		return func(f *fastFrame) (any, bool) {
			v, ok := a(f)
			str, isStr := v.(string)
			if !ok || !isStr {
				return nil, false
			}
			if pre != nil && !hasPrefix(str, pre) {
				return false, true
			}
			return re.MatchString(str), true
		}
	case (fn == "startsWith" || fn == "endsWith" || fn == "contains") && len(args) == 2 && call.IsMemberFunction() &&
		c.stdOverloads(id, "starts_with_string", "ends_with_string", "contains_string"):
		test := strings.HasPrefix
		switch fn {
		case "endsWith":
			test = strings.HasSuffix
		case "contains":
			test = strings.Contains
		}
		a, b := args[0], args[1]
		return func(f *fastFrame) (any, bool) {
			x, ok := a(f)
			if !ok {
				return nil, false
			}
			y, ok := b(f)
			xs, xok := x.(string)
			ys, yok := y.(string)
			if !ok || !xok || !yok {
				return nil, false
			}
			return test(xs, ys), true
		}
	}
	return c.fail()
}

// fastLogical is && (or=false) and || (or=true): the right side is not
// evaluated when the left decides, as cel-go does without exhaustive
// evaluation; a non-bool or an error on either side gives up (cel-go may
// absorb it).
func fastLogical(l, r fastNode, or bool) fastNode {
	return func(f *fastFrame) (any, bool) {
		v, ok := l(f)
		b, isBool := v.(bool)
		if !ok || !isBool {
			return nil, false
		}
		if b == or {
			return b, true
		}
		v, ok = r(f)
		b, isBool = v.(bool)
		return b, ok && isBool
	}
}

// binary evaluates both operands, then op on their values; an operand or
// op giving up gives up.
func binary(l, r fastNode, op func(x, y any) (any, bool)) fastNode {
	return func(f *fastFrame) (any, bool) {
		x, ok := l(f)
		if !ok {
			return nil, false
		}
		y, ok := r(f)
		if !ok {
			return nil, false
		}
		return op(x, y)
	}
}

// scalarEqual is x == y for two strings, two bools or two ints; ok is false
// for anything else (cel-go's heterogeneous equality).
func scalarEqual(x, y any) (eq, ok bool) {
	switch xv := x.(type) {
	case string:
		yv, same := y.(string)
		return xv == yv, same
	case bool:
		yv, same := y.(bool)
		return xv == yv, same
	case int64:
		yv, same := y.(int64)
		return xv == yv, same
	}
	return false, false
}

func fastEquals(l, r fastNode, negate bool) fastNode {
	return binary(l, r, func(x, y any) (any, bool) {
		eq, ok := scalarEqual(x, y)
		return eq != negate, ok
	})
}

func fastAdd(l, r fastNode) fastNode { return binary(l, r, addValues) }

// addValues is x + y for lists (an accumulator appended in place), strings
// and ints; anything else, and an int overflow, is cel-go's.
func addValues(x, y any) (any, bool) {
	switch xv := x.(type) {
	case *accList:
		yv, isList := y.([]any)
		if !isList {
			return nil, false
		}
		xv.items = append(xv.items, yv...)
		return xv, true
	case string:
		yv, isStr := y.(string)
		if !isStr {
			return nil, false
		}
		return xv + yv, true
	case int64:
		yv, isInt := y.(int64)
		if !isInt {
			return nil, false
		}
		s := xv + yv
		if (s > xv) != (yv > 0) {
			return nil, false // overflow: cel-go's error
		}
		return s, true
	}
	xl, yl := fastLen(x), fastLen(y)
	if xl < 0 || yl < 0 {
		return nil, false
	}
	out := make([]any, 0, xl+yl)
	for i := 0; i < xl; i++ {
		out = append(out, fastIndex(x, i))
	}
	for i := 0; i < yl; i++ {
		out = append(out, fastIndex(y, i))
	}
	return out, true
}

// fastIn is `x in list` for a string, bool or int x and a list whose
// elements are all of x's type; anything else is cel-go's.
func fastIn(l, r fastNode) fastNode {
	return binary(l, r, func(x, y any) (any, bool) {
		n := fastLen(y)
		if n < 0 {
			return nil, false
		}
		for i := 0; i < n; i++ {
			eq, ok := scalarEqual(x, fastIndex(y, i))
			if !ok {
				return nil, false
			}
			if eq {
				return true, true // cel-go stops at the first equal element too
			}
		}
		return false, true
	})
}

func fastCompareInts(fn string, l, r fastNode) fastNode {
	return binary(l, r, func(x, y any) (any, bool) {
		xv, xok := x.(int64)
		yv, yok := y.(int64)
		if !xok || !yok {
			return nil, false
		}
		switch fn {
		case operators.Less:
			return xv < yv, true
		case operators.LessEquals:
			return xv <= yv, true
		case operators.Greater:
			return xv > yv, true
		}
		return xv >= yv, true
	})
}

// fastIndexOp is list[int] within bounds and object[string] of a present
// key; anything else (out of range, a missing key, a double index) is
// cel-go's.
func fastIndexOp(l, r fastNode) fastNode {
	return binary(l, r, func(x, y any) (any, bool) {
		switch k := y.(type) {
		case int64:
			if n := fastLen(x); k >= 0 && k < int64(n) {
				if v := fastIndex(x, int(k)); v != nil {
					return v, true
				}
			}
		case string:
			if v, has, _ := fastField(x, k); has && v != nil {
				return v, true
			}
		}
		return nil, false
	})
}

// fastAppend is l + [elems...]: appended in place when l is a
// comprehension's accumulator, else the general +.
func fastAppend(l, list fastNode, elems []fastNode) fastNode {
	general := fastAdd(l, list)
	return func(f *fastFrame) (any, bool) {
		x, ok := l(f)
		if !ok {
			return nil, false
		}
		acc, isAcc := x.(*accList)
		if !isAcc {
			return general(f)
		}
		if acc.items, ok = appendElems(f, acc.items, elems); !ok {
			return nil, false
		}
		return acc, true
	}
}

// appendElems appends the values of elems to dst; an accumulator among
// them (only a comprehension's own step may hold one) gives up.
func appendElems(f *fastFrame, dst []any, elems []fastNode) ([]any, bool) {
	for _, el := range elems {
		v, ok := el(f)
		if !ok {
			return nil, false
		}
		if _, acc := v.(*accList); acc {
			return nil, false
		}
		dst = append(dst, v)
	}
	return dst, true
}

// concat flattens a chain of list concatenations a + b + c (left-nested
// _+_ calls whose operands are not list literals) into its operands, so
// that the result is built once; nil for a single +.
func (c *fastCompiler) concat(call celast.CallExpr) []fastNode {
	var operands []celast.Expr
	var walk func(e celast.Expr)
	walk = func(e celast.Expr) {
		if e.Kind() == celast.CallKind {
			if inner := e.AsCall(); inner.FunctionName() == operators.Add && len(inner.Args()) == 2 &&
				!inner.IsMemberFunction() && c.stdOverloads(e.ID(), "add_") {
				walk(inner.Args()[0])
				walk(inner.Args()[1])
				return
			}
		}
		operands = append(operands, e)
	}
	walk(call.Args()[0])
	walk(call.Args()[1])
	if len(operands) < 3 {
		return nil
	}
	ops := make([]fastNode, len(operands))
	for i, o := range operands {
		ops[i] = c.node(o)
	}
	if c.failed {
		return nil
	}
	return ops
}

// fastConcat is o1 + o2 + ...: lists built in one allocation, anything
// else added pairwise.
func fastConcat(ops []fastNode) fastNode {
	return func(f *fastFrame) (any, bool) {
		var vals [8]any
		vs := vals[:0]
		n := 0
		var ok bool
		for _, o := range ops {
			var v any
			v, ok = o(f)
			if !ok {
				return nil, false
			}
			n += fastLen(v)
			vs = append(vs, v)
		}
		for _, v := range vs {
			if fastLen(v) < 0 {
				// Not all lists: strings, numbers, an accumulator, added
				// pairwise as cel-go does.
				acc := vs[0]
				for _, w := range vs[1:] {
					if acc, ok = addValues(acc, w); !ok {
						return nil, false
					}
				}
				return acc, true
			}
		}
		out := make([]any, 0, n)
		for _, v := range vs {
			for i, l := 0, fastLen(v); i < l; i++ {
				out = append(out, fastIndex(v, i))
			}
		}
		return out, true
	}
}

// listAt boxes the []any at *p without copying its header: the interface
// points at *p, which is never written again (the parser boxes its arrays
// the same way, gitlab.listAt).
func listAt(p *[]any) any {
	v := any(([]any)(nil))
	(*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1] = unsafe.Pointer(p)
	return v
}
