package celenv

import (
	"encoding/base64"
	"regexp"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// String functions (Triggers-compatible).
//
// truncate
//
// Returns the first n characters of the string, or the whole string when it
// is shorter. Characters are Unicode code points, as for size(). A negative
// n is an error (Triggers panics).
//
//	<string>.truncate(<int>) -> <string>
//
//	body.checkout_sha.truncate(8) // 'da156088' for 'da1560886d4f…'
//
// translate
//
// Replaces every match of the regular expression (Go RE2 syntax) with the
// replacement, in which $1 or ${name} stand for submatches (Go's
// regexp.ReplaceAllString). A bad expression is an error.
//
//	<string>.translate(<string>, <string>) -> <string>
//
//	'This is $an Invalid5String '.translate('[^a-z0-9]+', '') // 'hisisannvalid5tring'
//
// decodeb64
//
// Decodes standard base64, padded or not, into a string. Documented by
// Triggers (deprecated there in favour of base64.decode, and no longer
// declared by its interceptor); here as documented. Decoded bytes that are
// not UTF-8 text are an error: use base64.decode for binary data.
//
//	<string>.decodeb64() -> <string>
//
//	'aGVsbG8='.decodeb64() // 'hello'
const (
	fnTruncate  = "truncate"
	fnTranslate = "translate"
	fnDecodeB64 = "decodeb64"

	ovTruncate  = "truncate_string_int"
	ovTranslate = "translate_string_string_string"
	ovDecodeB64 = "decodeb64_string"
)

var stringCosts = []costSpec{
	{overload: ovTruncate,
		estimate: func(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
			if target == nil || len(args) != 1 {
				return nil
			}
			size := estimatedSize(est, *target)
			if n, ok := intLiteral(args[0]); ok && n >= 0 && uint64(n) < size.Max {
				size.Max = uint64(n)
				size.Min = min(size.Min, size.Max)
			}
			return &checker.CallEstimate{CostEstimate: linearEstimate(size, traversalFactor), ResultSize: &size}
		},
		track: func(_ []ref.Val, result ref.Val) *uint64 {
			return uptr(linearCost(actualSize(result), traversalFactor))
		}},
	{overload: ovTranslate,
		estimate: func(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
			if target == nil || len(args) != 2 {
				return nil
			}
			src := estimatedSize(est, *target)
			re := estimatedSize(est, args[0])
			repl := estimatedSize(est, args[1])
			// As cel-go's matches(): scan × expression, plus writing the
			// output, at most (src+1) × (repl+1) characters (a replacement at
			// every position).
			one := checker.FixedSizeEstimate(1)
			scan := src.Add(one).MultiplyByCostFactor(traversalFactor)
			cost := scan.Multiply(re.MultiplyByCostFactor(regexFactor).Add(checker.FixedCostEstimate(1))).
				Add(linearEstimate(src.Add(one).Multiply(repl.Add(one)), traversalFactor))
			return &checker.CallEstimate{CostEstimate: cost}
		},
		track: func(args []ref.Val, result ref.Val) *uint64 {
			if len(args) != 3 {
				return uptr(callCost)
			}
			scan := ceilMul(float64(actualSize(args[0]))+1, traversalFactor)
			re := saturatingAdd(ceilMul(float64(actualSize(args[1])), regexFactor), 1)
			cost := saturatingAdd(saturatingMul(scan, re), linearCost(actualSize(result), traversalFactor))
			return uptr(cost)
		}},
	{overload: ovDecodeB64,
		estimate: func(est checker.CostEstimator, target *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
			if target == nil {
				return nil
			}
			size := estimatedSize(est, *target)
			result := checker.SizeEstimate{Min: 0, Max: size.Max}
			return &checker.CallEstimate{CostEstimate: linearEstimate(size, traversalFactor), ResultSize: &result}
		},
		track: func(args []ref.Val, _ ref.Val) *uint64 {
			if len(args) != 1 {
				return uptr(callCost)
			}
			return uptr(linearCost(actualSize(args[0]), traversalFactor))
		}},
}

func saturatingMul(x, y uint64) uint64 {
	if x != 0 && y > ^uint64(0)/x {
		return ^uint64(0)
	}
	return x * y
}

func stringFunctions(st *state) []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function(fnTruncate,
			cel.MemberOverload(ovTruncate, []*cel.Type{cel.StringType, cel.IntType}, cel.StringType,
				cel.OverloadExamples(`body.checkout_sha.truncate(8)`),
				cel.BinaryBinding(truncate))),
		cel.Function(fnTranslate,
			cel.MemberOverload(ovTranslate, []*cel.Type{cel.StringType, cel.StringType, cel.StringType}, cel.StringType,
				cel.OverloadExamples(`'feature/JIRA-1'.translate('[^a-z0-9]+', '-')`),
				cel.FunctionBinding(st.translate))),
		cel.Function(fnDecodeB64,
			cel.MemberOverload(ovDecodeB64, []*cel.Type{cel.StringType}, cel.StringType,
				cel.OverloadExamples(`'aGVsbG8='.decodeb64()`),
				cel.UnaryBinding(decodeB64))),
	}
}

func truncate(s, n ref.Val) ref.Val {
	str, limit := string(s.(types.String)), int64(n.(types.Int))
	if limit < 0 {
		return types.NewErr("truncate: negative length %d", limit)
	}
	i := 0
	for count := int64(0); i < len(str) && count < limit; count++ {
		_, size := utf8.DecodeRuneInString(str[i:])
		i += size
	}
	return types.String(str[:i])
}

func (st *state) translate(args ...ref.Val) ref.Val {
	src, expr, repl := args[0].(types.String), args[1].(types.String), args[2].(types.String)
	re, err := st.regexps.get(string(expr), func() (*regexp.Regexp, error) {
		return regexp.Compile(string(expr))
	})
	if err != nil {
		return types.NewErr("translate: failed to parse regular expression for translation: %v", err)
	}
	return types.String(re.ReplaceAllString(string(src), string(repl)))
}

func decodeB64(v ref.Val) ref.Val {
	s := string(v.(types.String))
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, rawErr := base64.RawStdEncoding.DecodeString(s)
		if rawErr != nil {
			return types.NewErr("decodeb64: %v", err)
		}
		b = raw
	}
	if !utf8.Valid(b) {
		return types.NewErr("decodeb64: the decoded bytes are not UTF-8 text: use base64.decode for binary data")
	}
	return types.String(b)
}
