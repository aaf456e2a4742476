package celenv

import (
	"net/http"
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// Header functions (Triggers-compatible).
//
// match
//
// Reports whether the header has the given value: the name is canonicalised
// as Go's http.Header.Get does (net/textproto.CanonicalMIMEHeaderKey), so
// the lookup is case-insensitive, and only the first value counts.
//
//	<map(string, dyn)>.match(<string>, <string>) -> <bool>
//
//	header.match('X-Gitlab-Event', 'Push Hook')
//
// canonical
//
// Returns the first value of the header, or "" when it is absent; the name is
// canonicalised like match.
//
//	<map(string, dyn)>.canonical(<string>) -> <string>
//
//	header.canonical('x-gitlab-event') // 'Push Hook'
//
// Both need the header map (map of string to list of strings); another
// receiver is an error.
const (
	fnMatch     = "match"
	fnCanonical = "canonical"

	ovMatch     = "match_map_string_string"
	ovCanonical = "canonical_map_string"
)

var headerCosts = []costSpec{
	{overload: ovMatch,
		estimate: func(est checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
			if len(args) != 2 {
				return nil
			}
			size := estimatedSize(est, args[0]).Add(estimatedSize(est, args[1]))
			return &checker.CallEstimate{CostEstimate: linearEstimate(size, traversalFactor)}
		},
		track: func(args []ref.Val, _ ref.Val) *uint64 {
			if len(args) != 3 {
				return uptr(callCost)
			}
			return uptr(linearCost(actualSize(args[1])+actualSize(args[2]), traversalFactor))
		}},
	{overload: ovCanonical,
		// The runtime cost counts the name and the value found; the value
		// is one of the header's items.
		estimate: func(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
			if len(args) != 1 || target == nil {
				return nil
			}
			size := estimatedSize(est, args[0]).Add(estimatedSize(est, itemNode{*target}))
			return &checker.CallEstimate{CostEstimate: linearEstimate(size, traversalFactor)}
		},
		track: func(args []ref.Val, result ref.Val) *uint64 {
			if len(args) != 2 {
				return uptr(callCost)
			}
			return uptr(linearCost(actualSize(args[1])+actualSize(result), traversalFactor))
		}},
}

func headerFunctions() []cel.EnvOption {
	mapStrDyn := cel.MapType(cel.StringType, cel.DynType)
	return []cel.EnvOption{
		cel.Function(fnMatch,
			cel.MemberOverload(ovMatch, []*cel.Type{mapStrDyn, cel.StringType, cel.StringType}, cel.BoolType,
				cel.OverloadExamples(`header.match('X-Gitlab-Event', 'Push Hook')`),
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					h, err := toHeader(args[0])
					if err != nil {
						return types.NewErr("match: %v", err)
					}
					name, value := args[1].(types.String), args[2].(types.String)
					return types.Bool(h.Get(string(name)) == string(value))
				}))),
		cel.Function(fnCanonical,
			cel.MemberOverload(ovCanonical, []*cel.Type{mapStrDyn, cel.StringType}, cel.StringType,
				cel.OverloadExamples(`header.canonical('x-gitlab-event')`),
				cel.BinaryBinding(func(m, name ref.Val) ref.Val {
					h, err := toHeader(m)
					if err != nil {
						return types.NewErr("canonical: %v", err)
					}
					return types.String(h.Get(string(name.(types.String))))
				}))),
	}
}

var httpHeaderType = reflect.TypeFor[http.Header]()

// toHeader returns the http.Header behind a CEL map: the header variable as
// given, or any map of string to list of strings.
func toHeader(v ref.Val) (http.Header, error) {
	switch h := v.Value().(type) {
	case http.Header:
		return h, nil
	case map[string][]string:
		return http.Header(h), nil
	}
	n, err := v.ConvertToNative(httpHeaderType)
	if err != nil {
		return nil, errNotHeader{err}
	}
	return n.(http.Header), nil
}

type errNotHeader struct{ err error }

func (e errNotHeader) Error() string {
	return "failed to convert to http.Header (the receiver must be a map of string to list of strings): " + e.err.Error()
}

func (e errNotHeader) Unwrap() error { return e.err }
