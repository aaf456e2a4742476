package celenv

import (
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// List functions (Triggers-compatible).
//
// first
//
// Returns the first element of a list, or null when it is empty.
//
//	<list(dyn)>.first() -> <dyn>
//
//	body.commits.first().id
//
// last
//
// Returns the last element of a list, or null when it is empty.
//
//	<list(dyn)>.last() -> <dyn>
//
//	body.ref.split('/').last() // 'main' for 'refs/heads/main'
const (
	fnFirst = "first"
	fnLast  = "last"

	ovFirst = "first_list"
	ovLast  = "last_list"
)

// Both are O(1): cel-go's default cost of 1 applies.
var listCosts []costSpec

func listFunctions() []cel.EnvOption {
	listDyn := cel.ListType(cel.DynType)
	return []cel.EnvOption{
		cel.Function(fnFirst,
			cel.MemberOverload(ovFirst, []*cel.Type{listDyn}, cel.DynType,
				cel.OverloadExamples(`body.commits.first()`),
				cel.UnaryBinding(func(v ref.Val) ref.Val { return listAt(v, false) }))),
		cel.Function(fnLast,
			cel.MemberOverload(ovLast, []*cel.Type{listDyn}, cel.DynType,
				cel.OverloadExamples(`body.ref.split('/').last()`),
				cel.UnaryBinding(func(v ref.Val) ref.Val { return listAt(v, true) }))),
	}
}

func listAt(v ref.Val, last bool) ref.Val {
	l, ok := v.(traits.Lister)
	if !ok {
		return types.NewErr("no such overload: %v is not a list", v.Type())
	}
	size, ok := l.Size().(types.Int)
	if !ok || size == 0 {
		return types.NullValue
	}
	if last {
		return l.Get(size - 1)
	}
	return l.Get(types.IntZero)
}
