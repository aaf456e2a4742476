package celenv

import (
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
)

// listsMaxRange is the largest list lists.range builds: cel-go's default
// (ext.ListsMaxRangeSize), which the environment keeps; a larger size is
// an evaluation error.
const listsMaxRange = 1_000_000

// extCosts replace the estimators of cel-go's substring, slice and
// lists.range, which take the size of a result from its arguments as if
// they were valid (end - start underflows when end < start) or unknown
// (lists.range of a non-constant size is MaxUint64). These bound the
// result by what evaluation can produce: a substring is no longer than its
// string, a slice than its list, a range than its argument and cel-go's
// limit. The runtime trackers stay cel-go's.
var extCosts = []costSpec{
	{overload: "string_substring_int", estimate: estimateSubstring},
	{overload: "string_substring_int_int", estimate: estimateSubstring},
	{overload: "list_slice", estimate: estimateSlice},
	{overload: "lists_range", estimate: estimateRange},
}

// estimateSubstring: 1 + 0.1 × the string's size + the result's size, as
// cel-go tracks it at runtime.
func estimateSubstring(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if target == nil || len(args) < 1 || len(args) > 2 {
		return nil
	}
	size := estimatedSize(est, *target)
	result := checker.SizeEstimate{Min: 0, Max: size.Max}
	if start, ok := intLiteral(args[0]); ok && start >= 0 {
		if len(args) == 1 {
			result.Max -= min(result.Max, uint64(start))
		} else if end, ok := intLiteral(args[1]); ok && start <= end {
			result.Max = min(result.Max, uint64(end-start))
		}
	}
	cost := size.MultiplyByCostFactor(common.StringTraversalCostFactor).
		Add(checker.FixedCostEstimate(callCost)).
		Add(result.AsCost())
	return &checker.CallEstimate{CostEstimate: cost, ResultSize: &result}
}

// estimateSlice: 1 + a list's allocation + the result's size.
func estimateSlice(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if target == nil || len(args) != 2 {
		return nil
	}
	size := estimatedSize(est, *target)
	result := checker.SizeEstimate{Min: 0, Max: size.Max}
	if start, ok := intLiteral(args[0]); ok {
		if end, ok := intLiteral(args[1]); ok && 0 <= start && start <= end {
			result.Max = min(result.Max, uint64(end-start))
		}
	}
	return allocatingListEstimate(result)
}

// estimateRange: 1 + a list's allocation + the result's size, at most
// cel-go's limit.
func estimateRange(_ checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if target != nil || len(args) != 1 {
		return nil
	}
	result := checker.SizeEstimate{Min: 0, Max: listsMaxRange}
	if n, ok := intLiteral(args[0]); ok && n >= 0 && n <= listsMaxRange {
		result = checker.FixedSizeEstimate(uint64(n))
	}
	return allocatingListEstimate(result)
}

func allocatingListEstimate(result checker.SizeEstimate) *checker.CallEstimate {
	cost := result.AsCost().
		Add(checker.FixedCostEstimate(common.ListCreateBaseCost + callCost))
	return &checker.CallEstimate{CostEstimate: cost, ResultSize: &result}
}
