package engine

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
)

// maxExplainDepth bounds the walk that looks for the dominant
// sub-expression (the parser already bounds an expression's depth).
const maxExplainDepth = 64

// cheapIteration is the estimate under which one iteration of a loop is
// not worth looking into: a few operations per element.
const cheapIteration = 100

// overEstimate explains a rejection by WithMaxEstimatedCost: the estimate,
// the limit, and the sub-expression that carries most of the estimate.
func (e *Engine) overEstimate(a *cel.Ast, est checker.CostEstimate) string {
	msg := fmt.Sprintf("its estimated worst-case cost %d exceeds the limit of %d (estimated with lists, maps and strings as large as a %d-byte body allows)",
		est.Max, e.maxEst, e.maxBytes)
	if d := e.dominant(a, est.Max); d != "" {
		msg += "; " + d
	}
	return msg
}

// dominant walks the checked AST from the root down, each time into the
// child that carries at least half of its parent's estimate, and describes
// the sub-expression where no child does: its source text, position,
// estimate, and the loops it is repeated in. Each child is estimated on
// its own with the environment's estimators, as the whole expression is.
func (e *Engine) dominant(a *cel.Ast, total uint64) (s string) {
	defer func() {
		// The walk estimates ASTs the checker did not build whole: should
		// cel-go fail on one, the rejection goes without its explanation.
		if recover() != nil {
			s = ""
		}
	}()
	root := a.NativeRep()
	if root == nil || root.Expr() == nil {
		return ""
	}
	var loops []celast.Expr // iteration ranges of the comprehensions entered
	cur, curCost := root.Expr(), total
	for depth := 0; depth < maxExplainDepth; depth++ {
		next, share, own, loop, ok := e.heaviestChild(root, cur)
		if !ok || share < curCost-curCost/2 {
			break
		}
		if loop != nil {
			loops = append(loops, loop)
		}
		cur, curCost = next, own
	}
	src := []rune(a.Source().Content())
	// A node the parser did not place (a macro's loop step) is shown by
	// the tokens of its subtree.
	text, start, ok := exprText(root.SourceInfo(), src, cur)
	if !ok {
		return ""
	}
	loc := root.SourceInfo().GetLocationByOffset(start)
	var b strings.Builder
	if cur == root.Expr() && cur.Kind() != celast.ComprehensionKind {
		fmt.Fprintf(&b, "no sub-expression carries most of it: the whole expression %s", quoteExpr(text))
	} else {
		fmt.Fprintf(&b, "most of it comes from %s at %d:%d, estimated up to %d", quoteExpr(text), loc.Line(), loc.Column()+1, curCost)
	}
	for i := len(loops) - 1; i >= 0; i-- {
		if t, _, ok := exprText(root.SourceInfo(), src, loops[i]); ok {
			fmt.Fprintf(&b, " for each element of %s", quoteExpr(t))
		}
	}
	return b.String()
}

// heaviestChild returns the child of x with the largest estimate and that
// estimate. For a comprehension, the loop step is charged for every
// iteration: its share is the comprehension's estimate minus the parts run
// once, and loop is the iteration range.
func (e *Engine) heaviestChild(root *celast.AST, x celast.Expr) (child celast.Expr, share, own uint64, loop celast.Expr, ok bool) {
	if x.Kind() == celast.ComprehensionKind {
		comp := x.AsComprehension()
		whole, okW := e.subCost(root, x)
		if !okW {
			return nil, 0, 0, nil, false
		}
		once := uint64(0)
		best, bestCost := celast.Expr(nil), uint64(0)
		for _, c := range []celast.Expr{comp.IterRange(), comp.AccuInit(), comp.Result()} {
			est, ok := e.subCost(root, c)
			if !ok {
				return nil, 0, 0, nil, false
			}
			once = satAdd(once, est)
			if best == nil || est > bestCost {
				best, bestCost = c, est
			}
		}
		step, cond := comp.LoopStep(), comp.LoopCondition()
		stepCost, ok1 := e.subCost(root, step)
		condCost, ok2 := e.subCost(root, cond)
		if !ok1 || !ok2 {
			return nil, 0, 0, nil, false
		}
		body := step
		if condCost > stepCost {
			body = cond
		}
		if repeated := whole - min(once, whole); repeated > bestCost {
			perIteration := max(stepCost, condCost)
			if perIteration < cheapIteration {
				// The number of iterations makes the cost, not what
				// each one does: the loop itself is the answer.
				return nil, 0, 0, nil, false
			}
			// Continue inside one iteration: the body's share of the
			// comprehension is what is repeated; from then on its own
			// estimate is compared with its children's.
			return body, repeated, perIteration, comp.IterRange(), true
		}
		return best, bestCost, bestCost, nil, true
	}
	for _, c := range children(x) {
		est, ok := e.subCost(root, c)
		if !ok {
			return nil, 0, 0, nil, false
		}
		if child == nil || est > share {
			child, share = c, est
		}
	}
	return child, share, share, nil, child != nil
}

// subCost estimates one sub-expression of root on its own, with the
// engine's size hints and the environment's function estimators.
func (e *Engine) subCost(root *celast.AST, x celast.Expr) (uint64, bool) {
	sub := celast.NewCheckedAST(celast.NewAST(x, root.SourceInfo()), root.TypeMap(), root.ReferenceMap())
	pb, err := celast.ToProto(sub)
	if err != nil {
		return 0, false
	}
	est, err := e.env.EstimateCost(cel.CheckedExprToAst(pb), freeVarHints{sizeHints{max: e.maxBytes}})
	if err != nil {
		return 0, false
	}
	return est.Max, true
}

// freeVarHints are sizeHints that also bound the variables a sub-expression
// estimated on its own leaves free (a comprehension's element, such as c in
// body.commits.exists(c, …)) by the request's size, so the explanation
// speaks per element. Only for naming the dominant sub-expression: a cost
// proof never uses it (sizeHints.EstimateSize says why).
type freeVarHints struct{ sizeHints }

func (h freeVarHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if len(n.Path()) > 0 {
		return &checker.SizeEstimate{Min: 0, Max: h.max}
	}
	return nil
}

// children are the direct sub-expressions of x (not of a comprehension).
func children(x celast.Expr) []celast.Expr {
	switch x.Kind() {
	case celast.CallKind:
		call := x.AsCall()
		var out []celast.Expr
		if call.IsMemberFunction() {
			out = append(out, call.Target())
		}
		return append(out, call.Args()...)
	case celast.SelectKind:
		return []celast.Expr{x.AsSelect().Operand()}
	case celast.ListKind:
		return x.AsList().Elements()
	case celast.MapKind:
		var out []celast.Expr
		for _, en := range x.AsMap().Entries() {
			me := en.AsMapEntry()
			out = append(out, me.Key(), me.Value())
		}
		return out
	case celast.StructKind:
		var out []celast.Expr
		for _, f := range x.AsStruct().Fields() {
			out = append(out, f.AsStructField().Value())
		}
		return out
	}
	return nil
}

// exprText returns the source text of x and its start offset. The parser
// records the offset of each node's own token only (a call's is its
// opening parenthesis), so the text runs from the first to the last token
// of the subtree, then on to the closing brackets that balance it.
func exprText(info *celast.SourceInfo, src []rune, x celast.Expr) (string, int32, bool) {
	start, stop := int32(-1), int32(-1)
	var literals [][2]int32
	celast.PreOrderVisit(x, celast.NewExprVisitor(func(n celast.Expr) {
		r, ok := info.GetOffsetRange(n.ID())
		if !ok || r.Start < 0 || r.Stop > int32(len(src)) || r.Start > r.Stop || r.Start == r.Stop {
			return
		}
		begin := r.Start
		if n.Kind() == celast.CallKind && !n.AsCall().IsMemberFunction() {
			// The recorded token of a global call is its parenthesis:
			// take in the function's name.
			begin = beforeName(src, begin, n.AsCall().FunctionName())
		}
		if start < 0 || begin < start {
			start = begin
		}
		end := r.Stop
		if n.Kind() == celast.SelectKind {
			// The recorded token is the dot: take in the field name.
			end = afterName(src, end, n.AsSelect().FieldName())
		}
		if end > stop {
			stop = end
		}
		if n.Kind() == celast.LiteralKind {
			literals = append(literals, [2]int32{r.Start, r.Stop})
		}
	}))
	if start < 0 {
		return "", 0, false
	}
	inLiteral := func(i int32) bool {
		for _, l := range literals {
			if i >= l[0] && i < l[1] {
				return true
			}
		}
		return false
	}
	depth := 0
	for i := start; i < stop; i++ {
		if inLiteral(i) {
			continue
		}
		switch src[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		}
	}
	for i := stop; depth > 0 && i < int32(len(src)); i++ {
		switch src[i] {
		case ')', ']', '}':
			depth--
			stop = i + 1
		case ' ', '\t', '\r', '\n', ',':
		default:
			depth = 0 // not a closing bracket: stop where the tokens stop
		}
	}
	return string(src[start:stop]), start, true
}

// afterName returns the offset after name when it follows i, spaces
// aside; i otherwise.
func afterName(src []rune, i int32, name string) int32 {
	j := i
	for j < int32(len(src)) && (src[j] == ' ' || src[j] == '\t' || src[j] == '\r' || src[j] == '\n') {
		j++
	}
	n := []rune(name)
	if j+int32(len(n)) <= int32(len(src)) && string(src[j:j+int32(len(n))]) == name {
		return j + int32(len(n))
	}
	return i
}

// beforeName returns the offset of name when it ends at i, spaces aside;
// i otherwise (operators are not written by name).
func beforeName(src []rune, i int32, name string) int32 {
	if name == "" || !(unicode.IsLetter(rune(name[0]))) {
		return i
	}
	j := i
	for j > 0 && (src[j-1] == ' ' || src[j-1] == '\t' || src[j-1] == '\r' || src[j-1] == '\n') {
		j--
	}
	n := int32(len([]rune(name)))
	if j-n >= 0 && string(src[j-n:j]) == name {
		return j - n
	}
	return i
}

// quoteExpr shows an expression in a message, shortened.
func quoteExpr(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:77]) + "..."
	}
	return "`" + s + "`"
}

func satAdd(x, y uint64) uint64 {
	if x+y < x {
		return ^uint64(0)
	}
	return x + y
}
