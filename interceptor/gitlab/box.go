package gitlab

import "unsafe"

// An interface value is a type word and a pointer to the value: for a
// string, to a string header the runtime never writes again. stringAt
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

// stringType is the type word of a string in an interface.
var stringType = func() unsafe.Pointer {
	var v any = ""
	return (*eface)(unsafe.Pointer(&v)).typ
}()

func stringAt(p *string) any {
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = stringType, unsafe.Pointer(p)
	return v
}
