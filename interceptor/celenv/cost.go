package celenv

import (
	"math"
	"slices"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Cost factors, in CEL cost units per character (Unicode code point) of
// input. A cost unit is roughly one step of the interpreter; cel-go charges
// 0.1 per character for a string traversal. Our factors are set from the
// benchmarks in cost_test.go so that a unit costs about as much time in our
// functions as in cel-go's own (see docs/cel-reference.md, "Costs").
const (
	// traversalFactor prices a linear scan or copy of a string: truncate,
	// canonical, compareSecret, decodeb64, parseURL, path matching.
	traversalFactor = 0.1
	// parseJSONFactor prices decoding JSON into CEL values.
	parseJSONFactor = 0.9
	// parseYAMLFactor prices decoding YAML (through JSON) into CEL values.
	parseYAMLFactor = 4.0
	// marshalFactor prices encoding to JSON, per character of output.
	marshalFactor = 0.9
	// regexFactor prices a regular expression per character of its source,
	// as cel-go does for matches().
	regexFactor = 0.25
	// callCost is the fixed cost of any call.
	callCost = 1
)

// costSpec is the cost model of one overload: an estimate for the checker
// and a tracker for the runtime. Either may be nil (cel-go's default: 1).
type costSpec struct {
	overload string
	estimate checker.FunctionEstimator
	track    interpreter.FunctionTracker
}

// unboundedEstimates are the overloads whose checker estimate does not
// bound their runtime cost: marshalJSON's estimate counts the receiver's
// entries, its runtime cost the output (docs/cel-reference.md, Costs).
var unboundedEstimates = map[string]bool{
	ovMarshalJSONMap:  true,
	ovMarshalJSONList: true,
	marshalJSONAlias:  true,
}

// EstimateBounds reports whether the checker's cost estimate of the
// overload bounds its runtime cost for inputs within the sizes the
// estimate was given (true for every overload but marshalJSON's, and for
// cel-go's own). The engine's cost proof skips expressions calling one
// that does not.
func EstimateBounds(overload string) bool { return !unboundedEstimates[overload] }

// costOptions turns the groups' specs into the environment's estimator
// options and the programs' cost-tracker options; the latter apply
// whenever the program tracks cost (cel.CostLimit, cel.CostTracking).
func costOptions(groups ...[]costSpec) (cel.EnvOption, cel.ProgramOption) {
	var estimators []checker.CostOption
	var trackers []interpreter.CostTrackerOption
	for _, s := range slices.Concat(groups...) {
		if s.estimate != nil {
			estimators = append(estimators, checker.OverloadCostEstimate(s.overload, s.estimate))
		}
		if s.track != nil {
			trackers = append(trackers, interpreter.OverloadCostTracker(s.overload, s.track))
		}
	}
	return cel.CostEstimatorOptions(estimators...), cel.CostTrackerOptions(trackers...)
}

// estimatedSize is the size (characters, entries, elements) the checker
// knows for a node: computed from literals, else from the caller's
// estimator, else unknown (0..MaxUint64).
func estimatedSize(est checker.CostEstimator, n checker.AstNode) checker.SizeEstimate {
	if s := n.ComputedSize(); s != nil {
		return *s
	}
	if s := est.EstimateSize(n); s != nil {
		return *s
	}
	return checker.SizeEstimate{Min: 0, Max: math.MaxUint64}
}

// itemNode stands for the elements of a list node, so that an estimator
// that knows element sizes by path ("@items") can bound them.
type itemNode struct{ list checker.AstNode }

func (n itemNode) Path() []string {
	p := n.list.Path()
	if p == nil {
		return nil
	}
	return append(append([]string(nil), p...), "@items")
}

func (n itemNode) Type() *types.Type {
	if t := n.list.Type(); t != nil && t.Kind() == types.ListKind && len(t.Parameters()) == 1 {
		return t.Parameters()[0]
	}
	return types.DynType
}

func (n itemNode) Expr() ast.Expr                      { return n.list.Expr() }
func (n itemNode) ComputedSize() *checker.SizeEstimate { return nil }

// exprNode stands for a sub-expression the checker gave no node for (an
// element of a list literal), with the field path of a variable selection.
type exprNode struct{ e ast.Expr }

func (n exprNode) Path() []string {
	switch n.e.Kind() {
	case ast.IdentKind:
		return []string{n.e.AsIdent()}
	case ast.SelectKind:
		sel := n.e.AsSelect()
		if sel.IsTestOnly() {
			return nil
		}
		if p := (exprNode{sel.Operand()}).Path(); p != nil {
			return append(p, sel.FieldName())
		}
	}
	return nil
}

func (n exprNode) Type() *types.Type                   { return types.DynType }
func (n exprNode) Expr() ast.Expr                      { return n.e }
func (n exprNode) ComputedSize() *checker.SizeEstimate { return nil }

// stringListEstimate estimates a list of strings: its element count and the
// total number of characters of its elements. String constants in a list
// literal are measured exactly; other elements are estimated by path.
func stringListEstimate(est checker.CostEstimator, n checker.AstNode) (count, chars checker.SizeEstimate) {
	if e := n.Expr(); e != nil && e.Kind() == ast.ListKind {
		elems := e.AsList().Elements()
		for _, el := range elems {
			if el.Kind() == ast.LiteralKind {
				if s, ok := el.AsLiteral().(types.String); ok {
					chars = chars.Add(checker.FixedSizeEstimate(uint64(utf8.RuneCountInString(string(s)))))
					continue
				}
			}
			chars = chars.Add(estimatedSize(est, exprNode{el}))
		}
		return checker.FixedSizeEstimate(uint64(len(elems))), chars
	}
	count = estimatedSize(est, n)
	item := estimatedSize(est, itemNode{n})
	return count, count.Multiply(item)
}

// linearEstimate is callCost + factor × (size + 1).
func linearEstimate(size checker.SizeEstimate, factor float64) checker.CostEstimate {
	return size.Add(checker.FixedSizeEstimate(1)).MultiplyByCostFactor(factor).Add(checker.FixedCostEstimate(callCost))
}

// actualSize is the size CEL's size() reports: code points of a string,
// bytes of bytes, entries of a map or list; 1 for anything else.
func actualSize(v ref.Val) uint64 {
	if s, ok := v.(traits.Sizer); ok {
		if n, ok := s.Size().(types.Int); ok && n >= 0 {
			return uint64(n)
		}
	}
	return 1
}

// linearCost is callCost + ceil(factor × (size + 1)), saturating.
func linearCost(size uint64, factor float64) uint64 {
	return saturatingAdd(callCost, ceilMul(float64(size)+1, factor))
}

func ceilMul(x, factor float64) uint64 {
	v := math.Ceil(x * factor)
	if v >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(v)
}

func saturatingAdd(x, y uint64) uint64 {
	if x > math.MaxUint64-y {
		return math.MaxUint64
	}
	return x + y
}

// uptr returns a pointer to v, as FunctionTracker results are.
func uptr(v uint64) *uint64 { return &v }

// aliasedCall renames the overload of a call the checker could not resolve
// to one overload (a dyn receiver with several candidates): cost trackers
// are keyed by overload, and the interpreter reports an empty overload for
// such calls. The alias's tracker picks the cost by the runtime arguments.
type aliasedCall struct {
	interpreter.InterpretableCall
	overload string
}

func (c *aliasedCall) OverloadID() string { return c.overload }

// aliasDecorator wraps unresolved calls to the given functions (name →
// alias overload id).
func aliasDecorator(aliases map[string]string) interpreter.InterpretableDecoratorV2 {
	return func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
		call, ok := i.(interpreter.InterpretableCall)
		if !ok || call.OverloadID() != "" {
			return i, nil
		}
		if alias, ok := aliases[call.Function()]; ok {
			return &aliasedCall{InterpretableCall: call, overload: alias}, nil
		}
		return i, nil
	}
}

// intLiteral returns the value of an int literal node.
func intLiteral(n checker.AstNode) (int64, bool) {
	e := n.Expr()
	if e == nil || e.Kind() != ast.LiteralKind {
		return 0, false
	}
	v, ok := e.AsLiteral().(types.Int)
	return int64(v), ok
}
