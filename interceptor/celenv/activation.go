package celenv

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

type namespaceKey struct{}

// WithNamespace returns a context carrying the namespace of the trigger being
// evaluated: compareSecret reads Secrets there, as Triggers does.
func WithNamespace(ctx context.Context, namespace string) context.Context {
	return context.WithValue(ctx, namespaceKey{}, namespace)
}

// NamespaceFrom returns the namespace set by WithNamespace.
func NamespaceFrom(ctx context.Context) (string, bool) {
	return contextValue[string](ctx, namespaceKey{})
}

// contextValue returns the value of ctx under key, if it is a T.
func contextValue[T any](ctx context.Context, key any) (T, bool) {
	v, ok := ctx.Value(key).(T)
	return v, ok
}

// contextVar names the activation entry that carries the request context to
// compareSecret. It is not a valid CEL identifier, so no expression can read
// or shadow it.
const contextVar = "@ciel.context"

// NewActivation returns the input for Program.ContextEval (or Eval): vars
// (a map[string]any or a cel.Activation holding body, header, extensions and
// requestURL) plus ctx, which compareSecret uses to read Secrets with the
// request's deadline and namespace. Pass the same ctx to ContextEval.
func NewActivation(ctx context.Context, vars any) (cel.Activation, error) {
	if ctx == nil {
		return nil, errors.New("building the CEL activation: nil context")
	}
	base, err := cel.NewActivation(vars)
	if err != nil {
		return nil, fmt.Errorf("building the CEL activation: %w", err)
	}
	return &requestActivation{ctx: ctx, parent: base}, nil
}

// requestActivation resolves contextVar to the request context and every
// other name through the caller's activation.
type requestActivation struct {
	ctx    context.Context //nolint:containedctx // one evaluation's input, never stored beyond it
	parent interpreter.Activation
}

var _ interpreter.Activation = (*requestActivation)(nil)

func (a *requestActivation) ResolveName(name string) (any, bool) {
	if name == contextVar {
		return a.ctx, true
	}
	return a.parent.ResolveName(name)
}

func (a *requestActivation) Parent() interpreter.Activation { return a.parent }

// execArgs evaluates the arguments of a call planned by one of our
// decorators (pathCall, compareSecretCall), as cel-go evaluates a call's:
// the first error, else the merged unknowns, stops the call (stop).
func execArgs(frame *interpreter.ExecutionFrame, args []interpreter.InterpretableV2) (vals []ref.Val, stop ref.Val) {
	vals = make([]ref.Val, len(args))
	var unknown *types.Unknown
	for i, a := range args {
		vals[i] = a.Exec(frame)
		if types.IsError(vals[i]) {
			return nil, vals[i]
		}
		unknown, _ = types.MaybeMergeUnknowns(vals[i], unknown)
	}
	if unknown != nil {
		return nil, unknown
	}
	return vals, nil
}

// requestContext finds the request context in an evaluation's activation.
func requestContext(vars interpreter.Activation) (context.Context, bool) {
	v, ok := vars.ResolveName(contextVar)
	if !ok {
		return nil, false
	}
	ctx, ok := v.(context.Context)
	return ctx, ok && ctx != nil
}

type costLimitKey struct{}

// WithCostLimit returns a context carrying the evaluation's cost limit (the
// cel.CostLimit of the program). cel-go charges a call's cost after the
// call returns; the path functions (glob, matchesAny, filterPaths), whose
// work grows with path length × pattern size, compare their own cost with
// this limit before they start and refuse with ErrCostLimit instead of
// working past it. Without it they only stop when the context is done.
func WithCostLimit(ctx context.Context, limit uint64) context.Context {
	return context.WithValue(ctx, costLimitKey{}, limit)
}

// costLimitFrom returns the limit set by WithCostLimit.
func costLimitFrom(ctx context.Context) (uint64, bool) {
	return contextValue[uint64](ctx, costLimitKey{})
}

// ErrCostLimit is wrapped by the error of a call refused because its own
// cost exceeds the evaluation's cost limit (WithCostLimit).
var ErrCostLimit = errors.New("cost limit exceeded")
