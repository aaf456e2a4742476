package celenv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/ciel-ci/ciel/interceptor/pathglob"
)

// Path functions (ciel). Patterns follow GitHub Actions path filters
// (package pathglob): * (not /), ** (anything, and "**/" also no segment),
// ? (the preceding character is optional), + (one or more of it), [a-z0-9]
// classes, \ escapes, and in lists a leading ! that excludes. A list
// includes a path when the last pattern matching it is positive. A bad
// pattern is an error naming it. Compiled patterns are cached, so constant
// patterns are compiled once.
//
// glob
//
// Reports whether the path matches one pattern. A "!" pattern is an error:
// negation only means something in a list; write !path.glob('...').
//
//	<string>.glob(<string>) -> <bool>
//
//	'docs/guide/intro.md'.glob('docs/**/*.md') // true
//
// matchesAny
//
// Reports whether the list includes at least one of the paths (or the one
// path).
//
//	<list(string)>.matchesAny(<list(string)>) -> <bool>
//	<string>.matchesAny(<list(string)>) -> <bool>
//
//	extensions.changed_files.all.matchesAny(['src/**', '!src/**/*.md'])
//
// filterPaths
//
// Returns the paths the list includes, in their order.
//
//	<list(string)>.filterPaths(<list(string)>) -> <list(string)>
//
//	extensions.changed_files.all.filterPaths(['charts/**'])
const (
	fnGlob        = "glob"
	fnMatchesAny  = "matchesAny"
	fnFilterPaths = "filterPaths"

	ovGlob             = "glob_string_string"
	ovMatchesAnyList   = "matchesAny_list_list"
	ovMatchesAnyString = "matchesAny_string_list"
	ovFilterPaths      = "filterPaths_list_list"
	// matchesAnyAlias names calls whose receiver type is only known at
	// runtime (dyn): the checker leaves both overloads open.
	matchesAnyAlias = "matchesAny_dyn_list"
)

// Cost model: matching one path against a list is bounded by the path's
// length times the patterns' total length; we charge
// ceil(0.1 × (len(path)+1)) × (patterns + ceil(0.1 × their characters)) per
// path, plus the call.

func pathsEstimate(targetIsList bool) checker.FunctionEstimator {
	return func(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		if target == nil || len(args) != 1 {
			return nil
		}
		var paths, chars checker.SizeEstimate
		if targetIsList {
			paths, chars = stringListEstimate(est, *target)
		} else {
			paths, chars = checker.FixedSizeEstimate(1), estimatedSize(est, *target)
		}
		patterns, patternChars := stringListEstimate(est, args[0])
		perPattern := patternChars.MultiplyByCostFactor(traversalFactor).Add(patterns.AsCost())
		// Σ over paths of ceil(0.1 × (len + 1)) ≤ 0.1 × (chars + paths) + paths.
		scan := chars.Add(paths).MultiplyByCostFactor(traversalFactor).Add(paths.AsCost())
		cost := scan.Multiply(perPattern).Add(checker.FixedCostEstimate(callCost))
		var result *checker.SizeEstimate
		if targetIsList {
			r := checker.SizeEstimate{Min: 0, Max: paths.Max}
			result = &r
		}
		return &checker.CallEstimate{CostEstimate: cost, ResultSize: result}
	}
}

func globEstimate(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if target == nil || len(args) != 1 {
		return nil
	}
	path := estimatedSize(est, *target)
	pattern := estimatedSize(est, args[0])
	scan := path.Add(checker.FixedSizeEstimate(1)).MultiplyByCostFactor(traversalFactor)
	perPattern := pattern.MultiplyByCostFactor(traversalFactor).Add(checker.FixedCostEstimate(1))
	return &checker.CallEstimate{CostEstimate: scan.Multiply(perPattern).Add(checker.FixedCostEstimate(callCost))}
}

// pathsTracker charges the model above from the runtime arguments; the
// receiver is a path or a list of paths.
func pathsTracker(args []ref.Val, _ ref.Val) *uint64 {
	if len(args) != 2 {
		return uptr(callCost)
	}
	var perPattern uint64
	if l, ok := args[1].(traits.Lister); ok {
		n, chars := listSizes(l)
		perPattern = saturatingAdd(n, ceilMul(float64(chars), traversalFactor))
	} else {
		perPattern = saturatingAdd(1, ceilMul(float64(actualSize(args[1])), traversalFactor))
	}
	var scan uint64
	if l, ok := args[0].(traits.Lister); ok {
		n, chars := listSizes(l)
		scan = saturatingAdd(ceilMul(float64(chars)+float64(n), traversalFactor), n)
	} else {
		scan = ceilMul(float64(actualSize(args[0]))+1, traversalFactor)
	}
	return uptr(saturatingAdd(callCost, saturatingMul(scan, perPattern)))
}

// listSizes returns the element count and total size of a list's elements.
// Lists of Go strings (changed_files' lists, body arrays) are read as they
// are: CEL's Get would allocate a value for each element.
func listSizes(l traits.Lister) (count, chars uint64) {
	n, ok := l.Size().(types.Int)
	if !ok {
		return 0, 0
	}
	switch native := l.Value().(type) {
	case []string:
		if len(native) == int(n) {
			for _, s := range native {
				chars = saturatingAdd(chars, uint64(codePoints(s)))
			}
			return uint64(n), chars
		}
	case []any:
		if len(native) == int(n) {
			for i, e := range native {
				if s, ok := e.(string); ok {
					chars = saturatingAdd(chars, uint64(codePoints(s)))
				} else {
					chars = saturatingAdd(chars, actualSize(l.Get(types.Int(i))))
				}
			}
			return uint64(n), chars
		}
	}
	for i := types.Int(0); i < n; i++ {
		chars = saturatingAdd(chars, actualSize(l.Get(i)))
	}
	return uint64(n), chars
}

var pathCosts = []costSpec{
	{overload: ovGlob, estimate: globEstimate, track: pathsTracker},
	{overload: ovMatchesAnyList, estimate: pathsEstimate(true), track: pathsTracker},
	{overload: ovMatchesAnyString, estimate: pathsEstimate(false), track: pathsTracker},
	{overload: ovFilterPaths, estimate: pathsEstimate(true), track: pathsTracker},
	{overload: matchesAnyAlias, track: pathsTracker},
}

func pathFunctions(st *state) []cel.EnvOption {
	listStr := cel.ListType(cel.StringType)
	return []cel.EnvOption{
		cel.Function(fnGlob,
			cel.MemberOverload(ovGlob, []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.OverloadExamples(`'docs/guide/intro.md'.glob('docs/**/*.md')`),
				cel.BinaryBinding(background(st.globContext)))),
		cel.Function(fnMatchesAny,
			cel.MemberOverload(ovMatchesAnyList, []*cel.Type{listStr, listStr}, cel.BoolType,
				cel.OverloadExamples(`extensions.changed_files.all.matchesAny(['src/**', '!src/**/*.md'])`),
				cel.BinaryBinding(background(st.matchesAnyListContext))),
			cel.MemberOverload(ovMatchesAnyString, []*cel.Type{cel.StringType, listStr}, cel.BoolType,
				cel.OverloadExamples(`'src/main.go'.matchesAny(['src/**', '!src/**/*.md'])`),
				cel.BinaryBinding(background(st.matchesAnyStringContext)))),
		cel.Function(fnFilterPaths,
			cel.MemberOverload(ovFilterPaths, []*cel.Type{listStr, listStr}, listStr,
				cel.OverloadExamples(`extensions.changed_files.all.filterPaths(['charts/**'])`),
				cel.BinaryBinding(background(st.filterPathsContext)))),
	}
}

var errNegatedGlob = errors.New("negation (!) only has a meaning in a pattern list (matchesAny, filterPaths): write !path.glob('...') instead")

// pathCall evaluates one glob, matchesAny or filterPaths call with the
// request context of the evaluation: the matching stops when the context is
// done (pathglob's *Context functions look at it inside their loops), and a
// call whose cost, charged by cel-go only once it returns, would exceed the
// evaluation's cost limit is refused before it starts.
type pathCall struct {
	interpreter.InterpretableCall
	st *state
}

// decoratePaths replaces the planned path-function calls by pathCalls.
func (st *state) decoratePaths(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok {
		return i, nil
	}
	switch call.Function() {
	case fnGlob, fnMatchesAny, fnFilterPaths:
		if len(call.Args()) == 2 {
			return &pathCall{InterpretableCall: call, st: st}, nil
		}
	}
	return i, nil
}

func (c *pathCall) Eval(vars interpreter.Activation) ref.Val {
	return c.Exec(interpreter.AsFrame(vars))
}

func (c *pathCall) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	vals, stop := execArgs(frame, c.Args())
	if stop != nil {
		return stop
	}
	ctx, ok := requestContext(frame)
	if !ok {
		ctx = context.Background()
	}
	fn := c.Function()
	if limit, ok := costLimitFrom(ctx); ok {
		if cost := *pathsTracker(vals, nil); cost > limit {
			return types.LabelErrNode(c.ID(), types.NewErr("%s: %w: matching these paths against these patterns costs %d, over the limit of %d", fn, ErrCostLimit, cost, limit))
		}
	}
	var v ref.Val
	switch fn {
	case fnGlob:
		v = c.st.globContext(ctx, vals[0], vals[1])
	case fnFilterPaths:
		v = c.st.filterPathsContext(ctx, vals[0], vals[1])
	default:
		switch vals[0].(type) {
		case types.String:
			v = c.st.matchesAnyStringContext(ctx, vals[0], vals[1])
		case traits.Lister:
			v = c.st.matchesAnyListContext(ctx, vals[0], vals[1])
		default:
			v = types.NewErr("no such overload: matchesAny: receiver is %v, want a string or a list of strings", vals[0].Type())
		}
	}
	return types.LabelErrNode(c.ID(), v)
}

// background is the binding of a path function that cel-go calls itself,
// outside a pathCall (constant folding, for one): it matches without a
// request context.
func background(f func(ctx context.Context, a, b ref.Val) ref.Val) func(a, b ref.Val) ref.Val {
	return func(a, b ref.Val) ref.Val { return f(context.Background(), a, b) }
}

// stopped is the CEL error of a match cut by its context.
func stopped(fn string, err error) ref.Val {
	return types.NewErr("%s: matching stopped: %w", fn, err)
}

func (st *state) globContext(ctx context.Context, path, pattern ref.Val) ref.Val {
	ps, ok := path.(types.String)
	if !ok {
		return types.NewErr("no such overload: glob: receiver is %v, want string", path.Type())
	}
	pt, ok := pattern.(types.String)
	if !ok {
		return types.NewErr("no such overload: glob: pattern is %v, want string", pattern.Type())
	}
	text := string(pt)
	p, err := st.patterns.get(text, func() (*pathglob.Pattern, error) {
		p, err := pathglob.Compile(text)
		if err == nil && p.Negated() {
			return nil, fmt.Errorf("pattern %q: %w", text, errNegatedGlob)
		}
		return p, err
	})
	if err != nil {
		return types.NewErr("glob: %v", err)
	}
	ok, err = p.MatchContext(ctx, string(ps))
	if err != nil {
		return stopped(fnGlob, err)
	}
	return types.Bool(ok)
}

// patternList compiles (or finds in the cache) the pattern list argument.
func (st *state) patternList(fn string, v ref.Val) (*pathglob.List, ref.Val) {
	patterns, err := stringList(v)
	if err != nil {
		return nil, types.NewErr("%s: patterns: %v", fn, err)
	}
	var key strings.Builder
	for _, p := range patterns {
		key.WriteString(strconv.Itoa(len(p)))
		key.WriteByte(':')
		key.WriteString(p)
	}
	l, err := st.lists.get(key.String(), func() (*pathglob.List, error) {
		return pathglob.CompileList(patterns)
	})
	if err != nil {
		return nil, types.NewErr("%s: %v", fn, err)
	}
	return l, nil
}

// stringList converts a CEL list of strings.
func stringList(v ref.Val) ([]string, error) {
	l, ok := v.(traits.Lister)
	if !ok {
		return nil, fmt.Errorf("got %v, want a list of strings", v.Type())
	}
	n, ok := l.Size().(types.Int)
	if !ok {
		return nil, errors.New("list without a size")
	}
	// A list of Go strings (changed_files' lists, body arrays) is read as
	// it is, without CEL's Get, which allocates a value for each element;
	// the callers only read the result.
	switch native := l.Value().(type) {
	case []string:
		if len(native) == int(n) {
			return native, nil
		}
	case []any:
		if out, ok := goStrings(native, int(n)); ok {
			return out, nil
		}
	}
	out := make([]string, n)
	for i := types.Int(0); i < n; i++ {
		e := l.Get(i)
		s, ok := e.(types.String)
		if !ok {
			return nil, fmt.Errorf("element %d is %v, want string", i, e.Type())
		}
		out[i] = string(s)
	}
	return out, nil
}

// codePoints is utf8.RuneCountInString (what CEL's size() reports for a
// string), eight ASCII bytes at a time: paths are nearly always ASCII.
func codePoints(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if binary.LittleEndian.Uint64([]byte(s[i:i+8]))&0x8080808080808080 != 0 {
			break
		}
	}
	return i + utf8.RuneCountInString(s[i:])
}

// goStringValues returns the Go values of a CEL list that holds Go strings
// only, as changed_files' lists and the body's arrays of strings do.
func goStringValues(v ref.Val) ([]any, bool) {
	l, ok := v.(traits.Lister)
	if !ok {
		return nil, false
	}
	native, ok := l.Value().([]any)
	if !ok {
		return nil, false
	}
	if n, ok := l.Size().(types.Int); !ok || !onlyStrings(native, int(n)) {
		return nil, false
	}
	return native, true
}

// onlyStrings reports whether native holds n Go strings and nothing else.
func onlyStrings(native []any, n int) bool {
	if len(native) != n {
		return false
	}
	for _, e := range native {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

// goStrings returns native as strings when it holds n Go strings only;
// anything else takes CEL's path, which converts (or rejects) each element.
func goStrings(native []any, n int) ([]string, bool) {
	if !onlyStrings(native, n) {
		return nil, false
	}
	out := make([]string, n)
	for i, e := range native {
		out[i] = e.(string)
	}
	return out, true
}

func (st *state) matchesAnyListContext(ctx context.Context, paths, patterns ref.Val) ref.Val {
	l, errVal := st.patternList(fnMatchesAny, patterns)
	if errVal != nil {
		return errVal
	}
	if native, ok := goStringValues(paths); ok {
		// The usual receiver, changed_files' lists: matched a chunk at a
		// time from a buffer on the stack, with no copy of the list.
		var chunk [128]string
		for i := 0; i < len(native); {
			k := 0
			for ; k < len(chunk) && i < len(native); k, i = k+1, i+1 {
				chunk[k] = native[i].(string)
			}
			ok, err := l.IncludesAnyContext(ctx, chunk[:k])
			if err != nil {
				return stopped(fnMatchesAny, err)
			}
			if ok {
				return types.True
			}
		}
		return types.False
	}
	ps, err := stringList(paths)
	if err != nil {
		return types.NewErr("matchesAny: paths: %v", err)
	}
	ok, err := l.IncludesAnyContext(ctx, ps)
	if err != nil {
		return stopped(fnMatchesAny, err)
	}
	return types.Bool(ok)
}

func (st *state) matchesAnyStringContext(ctx context.Context, path, patterns ref.Val) ref.Val {
	l, errVal := st.patternList(fnMatchesAny, patterns)
	if errVal != nil {
		return errVal
	}
	ok, err := l.IncludesContext(ctx, string(path.(types.String)))
	if err != nil {
		return stopped(fnMatchesAny, err)
	}
	return types.Bool(ok)
}

func (st *state) filterPathsContext(ctx context.Context, paths, patterns ref.Val) ref.Val {
	l, errVal := st.patternList(fnFilterPaths, patterns)
	if errVal != nil {
		return errVal
	}
	ps, err := stringList(paths)
	if err != nil {
		return types.NewErr("filterPaths: paths: %v", err)
	}
	out, err := l.FilterContext(ctx, ps)
	if err != nil {
		return stopped(fnFilterPaths, err)
	}
	return types.NewStringList(types.DefaultTypeAdapter, out)
}
