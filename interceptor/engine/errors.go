package engine

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an evaluation error so that a caller can map it to a
// response: the interceptor service to a Triggers status code, cel-eval to
// an exit code.
type Kind int

const (
	// KindInternal is a bug in ciel, never the user's input.
	KindInternal Kind = iota
	// KindInput is a request the engine cannot read: a body that is not a
	// JSON object, too large, too deep, invalid UTF-8, fields of the wrong
	// type. The service answers InvalidArgument.
	KindInput
	// KindCompile is an expression that does not compile or type-check.
	KindCompile
	// KindEval is an expression that failed at runtime (no such key, a
	// division by zero, a filter that returned a non-bool). The service
	// answers InvalidArgument, as Triggers' CEL interceptor does.
	KindEval
	// KindLimit is an evaluation stopped by a bound: the CEL cost limit or
	// the evaluation deadline.
	KindLimit
	// KindChangedFiles is a ChangedFilesSource that failed (the GitLab API
	// down): the service fails closed (Unavailable) or open, as configured.
	KindChangedFiles
)

func (k Kind) String() string {
	switch k {
	case KindInput:
		return "input"
	case KindCompile:
		return "compile"
	case KindEval:
		return "eval"
	case KindLimit:
		return "limit"
	case KindChangedFiles:
		return "changed files"
	default:
		return "internal"
	}
}

// Error is an error of the engine: what kind, where (body, filter,
// overlays[key], value, changed files) and why.
type Error struct {
	Kind  Kind
	Where string
	Err   error
}

func (e *Error) Error() string {
	if e.Where == "" {
		return e.Err.Error()
	}
	return e.Where + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of an error returned by the engine; KindInternal
// for any other error.
func KindOf(err error) Kind {
	var ce *CompileError
	if errors.As(err, &ce) {
		return KindCompile
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ExprError is one expression that did not compile.
type ExprError struct {
	// Where names the expression: "filter", "overlays[key]" or "value".
	Where string
	// Expression is its source.
	Expression string
	// Issues is cel-go's report, with line:column positions and a caret
	// under the offending part of the expression.
	Issues string
}

// CompileError lists every expression of a Rules that did not compile.
type CompileError struct {
	Errors []ExprError
}

func (e *CompileError) Error() string {
	var b strings.Builder
	for i, x := range e.Errors {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "compiling %s: %s", x.Where, x.Issues)
	}
	return b.String()
}
