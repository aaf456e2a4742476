package gitlab

import "unsafe"

// An interface value is a type word and a pointer to the value: for a
// string, to a string header the runtime never writes again (the same for
// a float64). stringAt
// builds that interface around a header the caller owns instead of
// copying it to a fresh allocation, which is what any(s) does; the parser
// uses it to box its string values a block at a time (jsonParser.box).
// The result is indistinguishable from any(*p): same dynamic type, same
// value, and the garbage collector keeps *p's block alive through it.
// *p must never be modified afterwards.

// eface is the runtime's layout of an empty interface.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// Type words of string, float64 and []any in an interface.
var (
	stringType  = typeWord("")
	float64Type = typeWord(float64(0))
	listType    = typeWord([]any(nil))
)

func typeWord(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// boxAt builds the interface of type word typ around data.
func boxAt(typ, data unsafe.Pointer) any {
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, data
	return v
}

func stringAt(p *string) any { return boxAt(stringType, unsafe.Pointer(p)) }

// float64At is stringAt for a float64.
func float64At(p *float64) any { return boxAt(float64Type, unsafe.Pointer(p)) }

// listAt is stringAt for a []any (its slice header).
func listAt(p *[]any) any { return boxAt(listType, unsafe.Pointer(p)) }

// block boxes values of type T several to an allocation: each boxed value
// points into the current block, which is never written again at that
// index. strBlock, numBlock and listBlock are its three uses.
type block[T any] struct{ s []T }

// put appends v to the block, allocating a block of n when the current one
// is full, and returns where it is.
func (b *block[T]) put(v T, n int) unsafe.Pointer {
	if len(b.s) == cap(b.s) {
		b.s = make([]T, 0, n)
	}
	b.s = append(b.s, v)
	return unsafe.Pointer(&b.s[len(b.s)-1])
}

// strBlock boxes strings: box returns v as an any, as any(v) does.
type strBlock struct{ block[string] }

func (b *strBlock) box(v string, n int) any { return boxAt(stringType, b.put(v, n)) }

// numBlock is strBlock for float64 values.
type numBlock struct{ block[float64] }

func (b *numBlock) box(v float64, n int) any { return boxAt(float64Type, b.put(v, n)) }

// listBlock is strBlock for the headers of []any values: an array's
// elements are one allocation, its header in the interface no other.
type listBlock struct{ block[[]any] }

func (b *listBlock) box(v []any, n int) any { return boxAt(listType, b.put(v, n)) }

// sharedStrings returns list's elements as a []string without copying them
// when list is exactly an array the parser boxed from a block of its own
// (one of blocks): the slice is that block, whose strings are never written
// again. It reports false otherwise. Only a recorded block is used: strings
// that merely sit side by side may span two allocations. The result's
// capacity is its length, so appending to it never writes into the block.
func sharedStrings(list []any, blocks stringBlocks) ([]string, bool) {
	if len(list) == 0 || blocks == nil {
		return nil, false
	}
	first := (*eface)(unsafe.Pointer(&list[0]))
	if first.typ != stringType {
		return nil, false
	}
	base := (*string)(first.data)
	if n, ok := blocks[base]; !ok || n != len(list) {
		return nil, false
	}
	for i := range list {
		e := (*eface)(unsafe.Pointer(&list[i]))
		if e.typ != stringType || e.data != unsafe.Add(first.data, uintptr(i)*unsafe.Sizeof("")) {
			return nil, false
		}
	}
	return unsafe.Slice(base, len(list))[:len(list):len(list)], true
}
