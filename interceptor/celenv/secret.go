package celenv

import (
	"context"
	"crypto/subtle"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/ciel-ci/ciel/interceptor/webhook"
)

// SecretGetter returns the value of one key of a Kubernetes Secret. The
// interceptor's secrets.Kubernetes and secrets.Dir implement it.
type SecretGetter interface {
	GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error)
}

// Secret functions (Triggers-compatible).
//
// compareSecret
//
// Compares the string with the value of a key of a Secret in the trigger's
// namespace, in constant time. Trailing line breaks of the stored value are
// ignored, as by the interceptor's secretRef check (webhook.SecretValue).
// The third argument, a namespace, is accepted for compatibility and
// ignored, as in Triggers (which stopped reading other namespaces'
// Secrets): the Secret is always read in the trigger's namespace. The evaluation must get its input from NewActivation, with the
// namespace set by WithNamespace, and the environment a WithSecretGetter;
// otherwise the call is an error saying which is missing.
//
//	<string>.compareSecret(<string key>, <string name>) -> <bool>
//	<string>.compareSecret(<string key>, <string name>, <string namespace>) -> <bool>
//
//	header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook')
const (
	fnCompareSecret = "compareSecret"

	ovCompareSecret   = "compareSecret_string_string_string"
	ovCompareSecretNS = "compareSecret_string_string_string_string"
)

func compareSecretEstimate(est checker.CostEstimator, target *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if target == nil {
		return nil
	}
	return &checker.CallEstimate{CostEstimate: linearEstimate(estimatedSize(est, *target), traversalFactor)}
}

func compareSecretTracker(args []ref.Val, _ ref.Val) *uint64 {
	if len(args) == 0 {
		return uptr(callCost)
	}
	return uptr(linearCost(actualSize(args[0]), traversalFactor))
}

var secretCosts = []costSpec{
	{overload: ovCompareSecret, estimate: compareSecretEstimate, track: compareSecretTracker},
	{overload: ovCompareSecretNS, estimate: compareSecretEstimate, track: compareSecretTracker},
}

// secretFunctions declares compareSecret with a late binding: the
// implementation needs the evaluation's request context, which plain
// function bindings never see. decorateCompareSecret plans each call into a
// compareSecretCall that reads it from the activation. A late binding also
// keeps constant folding from calling it at compile time.
func secretFunctions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function(fnCompareSecret,
			cel.MemberOverload(ovCompareSecret, []*cel.Type{cel.StringType, cel.StringType, cel.StringType}, cel.BoolType,
				cel.OverloadExamples(`header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook')`),
				cel.LateFunctionBinding()),
			cel.MemberOverload(ovCompareSecretNS, []*cel.Type{cel.StringType, cel.StringType, cel.StringType, cel.StringType}, cel.BoolType,
				cel.OverloadExamples(`header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook', 'ignored')`),
				cel.LateFunctionBinding())),
	}
}

// decorateCompareSecret replaces the planned compareSecret calls.
func (st *state) decorateCompareSecret(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || call.Function() != fnCompareSecret {
		return i, nil
	}
	overload := call.OverloadID()
	if overload == "" {
		switch len(call.Args()) {
		case 3:
			overload = ovCompareSecret
		case 4:
			overload = ovCompareSecretNS
		}
	}
	return &compareSecretCall{id: call.ID(), overload: overload, args: call.Args(), st: st}, nil
}

// compareSecretCall evaluates one compareSecret call.
type compareSecretCall struct {
	id       int64
	overload string
	args     []interpreter.InterpretableV2
	st       *state
}

var _ interpreter.InterpretableCall = (*compareSecretCall)(nil)

func (c *compareSecretCall) ID() int64                           { return c.id }
func (c *compareSecretCall) Function() string                    { return fnCompareSecret }
func (c *compareSecretCall) OverloadID() string                  { return c.overload }
func (c *compareSecretCall) Args() []interpreter.InterpretableV2 { return c.args }

func (c *compareSecretCall) Eval(vars interpreter.Activation) ref.Val {
	return c.Exec(interpreter.AsFrame(vars))
}

func (c *compareSecretCall) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	vals, stop := execArgs(frame, c.args)
	if stop != nil {
		return stop
	}
	return types.LabelErrNode(c.id, c.st.compareSecret(frame, vals))
}

func (st *state) compareSecret(vars interpreter.Activation, vals []ref.Val) ref.Val {
	if len(vals) != 3 && len(vals) != 4 {
		return types.NewErr("no such overload: compareSecret with %d arguments", len(vals)-1)
	}
	strs := make([]string, len(vals))
	for i, v := range vals {
		s, ok := v.(types.String)
		if !ok {
			return types.NewErr("no such overload: compareSecret: argument %d is %v, want string", i, v.Type())
		}
		strs[i] = string(s)
	}
	value, key, name := strs[0], strs[1], strs[2]
	if st.secrets == nil {
		return types.NewErr("compareSecret: no secret getter configured (celenv.WithSecretGetter)")
	}
	ctx, ok := requestContext(vars)
	if !ok {
		return types.NewErr("compareSecret: the evaluation has no request context: evaluate with celenv.NewActivation(ctx, vars)")
	}
	ns, _ := NamespaceFrom(ctx)
	if ns == "" {
		return types.NewErr("compareSecret: no trigger namespace in the request context (celenv.WithNamespace)")
	}
	secret, err := st.secrets.GetSecret(ctx, ns, name, key)
	if err != nil {
		return types.NewErr("compareSecret: reading key %q of secret %q in namespace %q: %w", key, name, ns, err)
	}
	// The same rule as the X-Gitlab-Token check: trailing line breaks of
	// the stored value are not part of the token.
	return types.Bool(subtle.ConstantTimeCompare(webhook.SecretValue(secret), []byte(value)) == 1)
}
